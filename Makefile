# Build, install and package abssd and abssctl.
#
#   make                          release build, plus abssctl's completions and man
#                                 pages (abssctl-gen) in $(CARGO_TARGET_DIR)/release/gen
#   sudo make install             install under $(DESTDIR)$(PREFIX) (see below)
#   make install DESTDIR=/tmp/stage PREFIX=/usr
#   sudo make uninstall           stop and disable the units, remove what install
#                                 put there (never data, never the group)
#   make deb                      Debian package via cargo-deb (target/debian/*.deb)
#
# install only copies files (it builds first only when nothing is built: run
# `make` as yourself, then `sudo make install`). Activating them is README.md's
# "Installing" section: systemd-sysusers, systemd-tmpfiles --create, daemon-reload,
# systemctl enable --now abssd.socket.

PREFIX      ?= /usr
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
SBINDIR     ?= $(PREFIX)/sbin
LIBDIR      ?= $(PREFIX)/lib
UNITDIR     ?= $(LIBDIR)/systemd/system
SYSUSERSDIR ?= $(LIBDIR)/sysusers.d
TMPFILESDIR ?= $(LIBDIR)/tmpfiles.d
DATADIR     ?= $(PREFIX)/share
MANDIR      ?= $(DATADIR)/man
DOCDIR      ?= $(DATADIR)/doc/abssd
BASHCOMPDIR ?= $(DATADIR)/bash-completion/completions
FISHCOMPDIR ?= $(DATADIR)/fish/vendor_completions.d
# Debian's zsh searches vendor-completions under /usr, site-functions elsewhere.
ifeq ($(PREFIX),/usr)
ZSHCOMPDIR  ?= $(DATADIR)/zsh/vendor-completions
else
ZSHCOMPDIR  ?= $(DATADIR)/zsh/site-functions
endif

CARGO            ?= cargo
CARGO_FLAGS      ?= --locked
CARGO_TARGET_DIR ?= target
INSTALL          ?= install
RELEASE := $(CARGO_TARGET_DIR)/release
GEN     := $(RELEASE)/gen

# What abssctl-gen writes (see abssctl-client/src/generate.rs).
COMPLETIONS := $(GEN)/completions/abssctl.bash $(GEN)/completions/_abssctl $(GEN)/completions/abssctl.fish
BUILT       := $(RELEASE)/abssd $(RELEASE)/abssctl $(COMPLETIONS) $(GEN)/man/abssctl.1
DOCS        := README.md docs/API.md

# The units name /usr/sbin/abssd, /usr/bin/abssctl and /usr/share/doc/abssd;
# other prefixes get their own paths written in.
UNIT_PATHS := sed -e 's|/usr/sbin/abssd|$(SBINDIR)/abssd|g' -e 's|/usr/bin/abssctl|$(BINDIR)/abssctl|g' \
	-e 's|/usr/share/doc/abssd|$(DOCDIR)|g'
# abssd's units, and the scheduled-backup timers and services (installed
# disabled: `abssctl schedule enable` turns them on).
UNITS := abssd.service abssd.socket abssctl-backup@.service abssctl-backup@.timer \
	abssctl-backup-all.service abssctl-backup-all.timer

.PHONY: all build install uninstall deb

all: build

build:
	$(CARGO) build --release $(CARGO_FLAGS) -p abssd -p abssctl-client --bins
	rm -rf $(GEN)
	$(RELEASE)/abssctl-gen $(GEN) >/dev/null

# Build only when something is missing; a stale build is `make`'s job, not root's.
$(BUILT) &:
	$(MAKE) build

install: $(BUILT)
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR) \
		$(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -m 0755 $(RELEASE)/abssd $(DESTDIR)$(SBINDIR)/abssd
	$(INSTALL) -m 0755 $(RELEASE)/abssctl $(DESTDIR)$(BINDIR)/abssctl
	for unit in $(UNITS); do \
		$(UNIT_PATHS) systemd/$$unit > $(DESTDIR)$(UNITDIR)/$$unit && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$unit || exit 1; \
	done
	$(INSTALL) -m 0644 systemd/abssctl.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/abssctl.conf
	$(INSTALL) -m 0644 systemd/abssctl.tmpfiles.conf $(DESTDIR)$(TMPFILESDIR)/abssctl.conf
	$(INSTALL) -m 0644 $(GEN)/completions/abssctl.bash $(DESTDIR)$(BASHCOMPDIR)/abssctl
	$(INSTALL) -m 0644 $(GEN)/completions/_abssctl $(DESTDIR)$(ZSHCOMPDIR)/_abssctl
	$(INSTALL) -m 0644 $(GEN)/completions/abssctl.fish $(DESTDIR)$(FISHCOMPDIR)/abssctl.fish
	$(INSTALL) -m 0644 $(GEN)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	$(INSTALL) -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 systemd/strict-sandbox.conf systemd/remote-network.conf $(DESTDIR)$(DOCDIR)/examples/
	@if [ -z "$(DESTDIR)" ]; then \
		echo; \
		echo "Installed. To run it (README.md, \"Installing\"):"; \
		echo "  systemd-sysusers && systemd-tmpfiles --create abssctl.conf"; \
		echo "  systemctl daemon-reload && systemctl enable --now abssd.socket"; \
		echo "  usermod -aG abssctl NAME    # operators"; \
	fi

# On the live system (no DESTDIR) the units are stopped and disabled first: once
# their files are gone systemctl can no longer find their [Install] sections.
# That includes every enabled backup timer; their calendar drop-ins
# (/etc/systemd/system/abssctl-backup*.timer.d/) are left, as the operator's.
uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now abssd.socket abssd.service 2>/dev/null || true; \
		for t in /etc/systemd/system/timers.target.wants/abssctl-backup*.timer; do \
			[ -e "$$t" ] || [ -L "$$t" ] || continue; \
			systemctl disable --now "$${t##*/}" 2>/dev/null || true; \
		done; \
	fi
	rm -f $(DESTDIR)$(SBINDIR)/abssd $(DESTDIR)$(BINDIR)/abssctl
	for unit in $(UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$unit; done
	rm -f $(DESTDIR)$(SYSUSERSDIR)/abssctl.conf $(DESTDIR)$(TMPFILESDIR)/abssctl.conf
	rm -f $(DESTDIR)$(BASHCOMPDIR)/abssctl $(DESTDIR)$(ZSHCOMPDIR)/_abssctl \
		$(DESTDIR)$(FISHCOMPDIR)/abssctl.fish
	rm -f $(DESTDIR)$(MANDIR)/man1/abssctl.1 $(DESTDIR)$(MANDIR)/man1/abssctl-*.1
	rm -rf $(DESTDIR)$(DOCDIR)
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "Group abssctl and the data (/srv/backups, /var/lib/abssctl, /var/log/abssctl) are left alone."

# cargo-deb is not a dependency of the build or of CI: `cargo install cargo-deb`.
# Its metadata is [package.metadata.deb] in abssd/Cargo.toml.
deb: build
	$(CARGO) deb -p abssd --no-build
