#!/usr/bin/env python3
"""Create a realistic Actual Budget sync-server instance under a prefix.

Usage: sample-instance.py PREFIX NAME [--size-mb N] [--small-files N] [--group-dbs] [--port P]

The layout matches what `abssd --prefix PREFIX` expects:

    PREFIX/srv/NAME/config.json                          sync-server config (0640)
    PREFIX/srv/NAME/data/server-files/                   (0700)
    PREFIX/srv/NAME/data/server-files/account.sqlite     users, sessions, files (0600)
    PREFIX/srv/NAME/data/.migrate                        the server's applied migrations
    PREFIX/srv/NAME/data/user-files/<uuid>/db.sqlite     budget databases (real SQLite)
    PREFIX/srv/NAME/data/user-files/<uuid>/metadata.json
    PREFIX/srv/NAME/data/user-files/file-<uuid>.blob     uploaded snapshot (zip of the budget)
    PREFIX/srv/NAME/data/private/sync-secret.key         (dir 0700, file 0600)
    PREFIX/srv/NAME/data/current -> user-files/<uuid>    relative symlink
    PREFIX/etc/systemd/system/abssctl-NAME.service
    PREFIX/etc/nginx/sites-available/abssctl-NAME.conf   (+ relative sites-enabled symlink)
    PREFIX/var/lib/abssctl/registry/instances.yml        entry added or replaced, with
                                                         the unit's and site's paths

`--size-mb` is the approximate size of the instance data (default 8). It is split
over budgets of at most ~48 MiB each (plus their blob); past two budgets the first
is generated and the rest are copies varied in SQL, which keeps 1 GiB at ~10 s.
`--small-files N` adds N files of 1-8 KB of mixed text in nested directories on
top of that (for the many-small-files benchmark).

`--group-dbs` also writes the database the sync server itself keeps for each
budget's sync messages, for benchmarks of a running instance's capture:
`user-files/group-<group id>.sqlite` (the server's `messages_binary` and
`messages_merkles`, holding the budget's sync messages as binary rows, about
two thirds of the budget db's size: a budget never reset keeps every change in
its group). The budgets shrink to keep the instance near `--size-mb`. Without
it the output is unchanged.

Budget databases hold realistic transactions (payees, amounts, dates, notes) and
CRDT sync messages; they compress ~5x with zstd -3. The snapshot blobs are
deflated zips, as the sync server stores them, and barely compress; together the
instance compresses about 3x (`tar -cf - -C PREFIX/srv NAME | zstd -3 -c | wc -c`).

Output is deterministic for a given NAME and options: the random generator is
seeded from the name and every mtime is fixed. Only the Python standard library
is used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import random
import re
import shutil
import sqlite3
import sys
import time
import uuid
import zipfile
import zlib

VERSION = "25.1.0"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
MIB = 1024 * 1024
# Measured size of one transaction with its CRDT messages and index entries.
BYTES_PER_TXN = 930
# Measured deflate (level 1) ratio of a budget db: sizes its snapshot blob.
DEFLATE_RATIO = 3.7
# Measured size of a group db (--group-dbs) relative to its budget db.
GROUP_DB_RATIO = 0.65
# The state file of the `migrate` package the sync server keeps in its data
# directory (`.migrate`); without it the server would run its migrations again.
MIGRATE_STATE = json.dumps({
    "lastRun": "1763873600000-backfill-files-owner.js",
    "migrations": [{"title": t, "timestamp": 1736933400000} for t in [
        "1694360000000-create-folders.js", "1694360479680-create-account-db.js",
        "1694362247011-create-secret-table.js", "1702667624000-rename-nordigen-secrets.js",
        "1718889148000-openid.js", "1719409568000-multiuser.js",
        "1763873568237-server-global-prefs.js", "1763873600000-backfill-files-owner.js"]],
}) + "\n"
# Fixed "now" so the output never depends on the clock.
EPOCH = int(dt.datetime(2025, 1, 15, 9, 30, tzinfo=dt.timezone.utc).timestamp())

PAYEES = [
    "Whole Foods Market", "Trader Joe's", "Safeway", "Costco Wholesale", "Aldi",
    "Shell", "Chevron", "BP", "Amazon", "Amazon Prime", "Netflix", "Spotify",
    "Apple", "Google Storage", "Comcast Xfinity", "AT&T Wireless", "Verizon",
    "PG&E", "City Water Dept", "State Farm Insurance", "Geico", "Blue Cross",
    "CVS Pharmacy", "Walgreens", "Target", "Walmart", "Home Depot", "Lowe's",
    "IKEA", "Starbucks", "Blue Bottle Coffee", "Chipotle", "Sweetgreen",
    "Domino's Pizza", "Uber", "Lyft", "Delta Air Lines", "Airbnb", "Marriott",
    "Planet Fitness", "Local Credit Union", "Landlord LLC", "Employer Payroll",
    "Etsy", "eBay", "PayPal Transfer", "Venmo", "Dr. Patel DDS", "Vet Clinic",
    "Petco", "Barnes & Noble", "REI", "Patagonia", "Kroger", "Publix",
    "Farmers Market", "Bakery on Main", "Hardware Corner", "Dry Cleaners",
    "Parking Meter", "Toll Road Authority", "DMV", "IRS", "Charity Donation",
]
CATEGORY_GROUPS = {
    "Usual Expenses": ["Food", "Groceries", "Restaurants", "Gas", "Clothing",
                       "Household", "Personal Care", "Entertainment"],
    "Bills": ["Rent", "Electric", "Water", "Internet", "Phone", "Insurance",
              "Subscriptions", "Medical"],
    "Savings": ["Emergency Fund", "Vacation", "Car Replacement", "Gifts"],
    "Income": ["Salary", "Interest", "Other Income"],
}
ACCOUNTS = ["Checking", "Savings", "Visa Rewards", "Amex Gold", "Cash",
            "Brokerage", "Joint Checking"]
NOTE_WORDS = (
    "weekly groceries refund split with Sam reimbursed by work birthday gift "
    "for mom annual renewal shared dinner trip to Portland office supplies "
    "fuel fill-up car wash monthly plan late fee waived cashback promo "
    "pharmacy copay school supplies hardware for the garden bulk order "
    "holiday shopping coffee beans tickets deposit pending review"
).split()
CRDT_COLUMNS = ["amount", "date", "description", "category", "notes", "acct",
                "cleared"]
TEXT_WORDS = (
    "budget account transfer balance category payee sync server client file "
    "group message merkle timestamp node clock encrypt key salt session token "
    "user password login backup restore archive instance domain port version "
    "status enabled disabled running stopped ok error warning info debug the "
    "a of to and in is for on with as by at from this that it be are was"
).split()

BUDGET_SCHEMA = """
CREATE TABLE __migrations__ (id INT PRIMARY KEY NOT NULL);
CREATE TABLE __meta__ (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE accounts (id TEXT PRIMARY KEY, name TEXT, offbudget INTEGER DEFAULT 0,
  closed INTEGER DEFAULT 0, sort_order REAL, tombstone INTEGER DEFAULT 0);
CREATE TABLE category_groups (id TEXT PRIMARY KEY, name TEXT UNIQUE,
  is_income INTEGER DEFAULT 0, sort_order REAL, tombstone INTEGER DEFAULT 0);
CREATE TABLE categories (id TEXT PRIMARY KEY, name TEXT, is_income INTEGER DEFAULT 0,
  cat_group TEXT, sort_order REAL, tombstone INTEGER DEFAULT 0);
CREATE TABLE payees (id TEXT PRIMARY KEY, name TEXT, category TEXT,
  tombstone INTEGER DEFAULT 0, transfer_acct TEXT);
CREATE TABLE transactions (id TEXT PRIMARY KEY, isParent INTEGER DEFAULT 0,
  isChild INTEGER DEFAULT 0, acct TEXT, category TEXT, amount INTEGER,
  description TEXT, notes TEXT, date INTEGER, financial_id TEXT,
  imported_description TEXT, cleared INTEGER DEFAULT 1, reconciled INTEGER DEFAULT 0,
  sort_order REAL, tombstone INTEGER DEFAULT 0, parent_id TEXT, schedule TEXT);
CREATE INDEX trans_category_date ON transactions(category, date);
CREATE INDEX trans_date ON transactions(date);
CREATE TABLE messages_crdt (id INTEGER PRIMARY KEY, timestamp TEXT NOT NULL UNIQUE,
  dataset TEXT NOT NULL, row TEXT NOT NULL, column TEXT NOT NULL, value BLOB NOT NULL);
CREATE TABLE messages_clock (id INTEGER PRIMARY KEY, clock TEXT);
"""

# The sync server's messages.sql, verbatim.
GROUP_SCHEMA = """
CREATE TABLE messages_binary
  (timestamp TEXT PRIMARY KEY,
   is_encrypted BOOLEAN,
   content bytea);

CREATE TABLE messages_merkles
  (id INTEGER PRIMARY KEY,
   merkle TEXT);
"""

ACCOUNT_SCHEMA = """
CREATE TABLE auth (method TEXT PRIMARY KEY, display_name TEXT, extra_data TEXT,
  active INTEGER);
CREATE TABLE users (id TEXT PRIMARY KEY, user_name TEXT, display_name TEXT,
  role TEXT, enabled INTEGER NOT NULL DEFAULT 1, owner INTEGER NOT NULL DEFAULT 0);
CREATE TABLE sessions (token TEXT PRIMARY KEY, expires_at INTEGER, user_id TEXT,
  auth_method TEXT);
CREATE TABLE files (id TEXT PRIMARY KEY, group_id TEXT, sync_version SMALLINT,
  encrypt_meta TEXT, encrypt_keyid TEXT, encrypt_salt TEXT, encrypt_test TEXT,
  deleted BOOLEAN DEFAULT FALSE, name TEXT, owner TEXT);
CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB);
"""


def new_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Create a sample Actual Budget sync-server instance under PREFIX.")
    p.add_argument("prefix", metavar="PREFIX", help="root passed to `abssd --prefix`")
    p.add_argument("name", metavar="NAME", help="instance name ([a-z0-9][a-z0-9-]*)")
    p.add_argument("--size-mb", type=float, default=8.0,
                   help="approximate size of the instance data in MiB (default 8)")
    p.add_argument("--small-files", type=int, default=0, metavar="N",
                   help="add N files of 1-8 KB of mixed text in nested dirs")
    p.add_argument("--group-dbs", action="store_true",
                   help="also write the sync server's group-<id>.sqlite per budget")
    p.add_argument("--port", type=int, default=None,
                   help="sync-server port (default: derived from NAME, 5006-5999)")
    p.add_argument("--domain", default=None,
                   help="public domain (default: NAME.example.test)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing instance directory of the same name")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    a = p.parse_args(argv)
    if not NAME_RE.match(a.name):
        p.error(f"invalid instance name {a.name!r}: must match [a-z0-9][a-z0-9-]*")
    if a.size_mb < 0 or a.small_files < 0:
        p.error("--size-mb and --small-files must not be negative")
    if a.port is None:
        a.port = 5006 + zlib.crc32(a.name.encode()) % 994
    if not 1 <= a.port <= 65535:
        p.error(f"--port {a.port} is out of range")
    if a.domain is None:
        a.domain = f"{a.name}.example.test"
    return a


class Instance:
    """One instance being generated: its paths, its seeded generator, its budgets."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        # Canonical, so registry paths match what the daemon derives from --prefix.
        os.makedirs(args.prefix, exist_ok=True)
        self.prefix = os.path.realpath(args.prefix)
        self.name = args.name
        self.rng = random.Random(f"abssd-sample-instance:{args.name}")
        self.root = os.path.join(self.prefix, "srv", self.name)
        self.data = os.path.join(self.root, "data")
        self.server_files = os.path.join(self.data, "server-files")
        self.user_files = os.path.join(self.data, "user-files")
        self.config = os.path.join(self.root, "config.json")
        self.budgets: list[str] = []
        self.group_ids: list[str] = []

    # -- helpers -----------------------------------------------------------

    def mtime(self) -> int:
        """A plausible mtime within the 90 days before EPOCH."""
        return EPOCH - self.rng.randrange(90 * 86400)

    def write(self, path: str, content: bytes | str, mode: int = 0o644) -> None:
        if isinstance(content, str):
            content = content.encode()
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)

    # -- pieces ------------------------------------------------------------

    def make_dirs(self) -> None:
        if os.path.lexists(self.root):
            if not self.args.force:
                sys.exit(f"sample-instance: {self.root} exists (use --force to replace)")
            shutil.rmtree(self.root)
        os.makedirs(self.user_files)
        os.makedirs(self.server_files)

    def write_config(self) -> None:
        cfg = {
            "hostname": "127.0.0.1",
            "port": self.args.port,
            "dataDir": self.data,
            "serverFiles": self.server_files,
            "userFiles": self.user_files,
            "loginMethod": "password",
            "allowedLoginMethods": ["password"],
            "trustedProxies": ["127.0.0.1/32", "::1/128"],
            "upload": {"fileSizeSyncLimitMB": 20, "syncEncryptedFileSizeLimitMB": 50,
                       "fileSizeLimitMB": 20},
        }
        self.write(self.config, json.dumps(cfg, indent=2) + "\n", 0o640)

    def write_account_db(self) -> None:
        rng = self.rng
        path = os.path.join(self.server_files, "account.sqlite")
        db = sqlite3.connect(path)
        db.executescript(ACCOUNT_SCHEMA)
        owner = new_uuid(rng)
        db.execute("INSERT INTO auth VALUES ('password', 'Password', ?, 1)",
                   ("$2b$12$" + "%053x" % rng.getrandbits(212),))
        db.execute("INSERT INTO users VALUES (?, '', '', 'ADMIN', 1, 1)", (owner,))
        for i in range(3):
            db.execute("INSERT INTO users VALUES (?, ?, ?, 'BASIC', 1, 0)",
                       (new_uuid(rng), f"member{i}", f"Household member {i}"))
        db.executemany("INSERT INTO sessions VALUES (?, ?, ?, 'password')", [
            (new_uuid(rng), EPOCH * 1000 + rng.randrange(86400000 * 30), owner)
            for _ in range(40)])
        for budget, group in zip(self.budgets, self.group_ids):
            db.execute("INSERT INTO files VALUES (?, ?, 2, NULL, NULL, NULL, NULL, 0, ?, ?)",
                       (budget, group, f"Budget {budget[:8]}", owner))
        db.execute("INSERT INTO secrets VALUES ('gocardless_secretId', ?)",
                   ("%032x" % rng.getrandbits(128),))
        db.commit()
        db.close()
        os.chmod(path, 0o600)
        os.chmod(self.server_files, 0o700)

    def generate_budget_db(self, path: str, budget_id: str, group_id: str,
                           target: int) -> None:
        """A budget db.sqlite grown to about `target` bytes with realistic rows."""
        rng = self.rng
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        db.executescript(BUDGET_SCHEMA)
        db.execute("BEGIN")
        db.executemany("INSERT INTO __migrations__ VALUES (?)",
                       [(1548957970627 + i * 86400000,) for i in range(60)])
        db.executemany("INSERT INTO __meta__ VALUES (?, ?)", [
            ("budgetName", f"Household {budget_id[:4]}"), ("groupId", group_id),
            ("cloudFileId", budget_id), ("lastUploaded", "2025-01-15")])
        accts = [new_uuid(rng) for _ in ACCOUNTS]
        db.executemany("INSERT INTO accounts VALUES (?, ?, ?, 0, ?, 0)",
                       [(a, n, int(n == "Brokerage"), i * 16384.0)
                        for i, (a, n) in enumerate(zip(accts, ACCOUNTS))])
        cats = []
        for gi, (gname, names) in enumerate(CATEGORY_GROUPS.items()):
            gid = new_uuid(rng)
            inc = int(gname == "Income")
            db.execute("INSERT INTO category_groups VALUES (?, ?, ?, ?, 0)",
                       (gid, gname, inc, gi * 16384.0))
            for ci, cname in enumerate(names):
                cid = new_uuid(rng)
                cats.append(cid)
                db.execute("INSERT INTO categories VALUES (?, ?, ?, ?, ?, 0)",
                           (cid, cname, inc, gid, ci * 16384.0))
        payees = [new_uuid(rng) for _ in PAYEES]
        db.executemany("INSERT INTO payees VALUES (?, ?, ?, 0, NULL)",
                       [(p, n, rng.choice(cats)) for p, n in zip(payees, PAYEES)])

        node = "%016x" % rng.getrandbits(64)
        # Spread the expected number of transactions over about seven years.
        first_day = dt.date(2018, 1, 1).toordinal()
        span = 7 * 365
        expected = max(1, target // BYTES_PER_TXN)
        batch = max(100, min(2000, expected // 8))
        clock_ms = EPOCH * 1000 - 5 * 365 * 86400000
        counter, i = 0, 0
        sec, sec_str = -1, ""
        npay, ncat, nacct, nnote = len(payees), len(cats), len(accts), len(NOTE_WORDS)
        getrandbits = rng.getrandbits
        while True:
            txns, msgs = [], []
            for _ in range(batch):
                r = getrandbits(64)
                h = "%032x" % getrandbits(128)
                tid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[r & 3]}{h[17:20]}-{h[20:]}"
                r >>= 2
                pi = r % npay
                r //= npay
                amount = -(r % 25000 + 99) if r % 11 else (r % 400000 + 150000)
                r //= 400000
                day = first_day + i * span // expected
                i += 1
                d = dt.date.fromordinal(day)
                date = d.year * 10000 + d.month * 100 + d.day
                notes = None
                if r % 3 == 0:
                    w = r // 3
                    notes = " ".join(NOTE_WORDS[(w >> s) % nnote] for s in (0, 7, 14))
                fin = "%d%06d" % (date, r % 1000000) if r % 5 else None
                cat = cats[(r >> 10) % ncat]
                txns.append((tid, accts[(r >> 20) % nacct], cat, amount, payees[pi], notes,
                             date, fin, "%s #%04d" % (PAYEES[pi].upper(), (r >> 30) % 10000),
                             int(r % 13 != 0), int(day < first_day + span - 60),
                             float(clock_ms)))
                for col in CRDT_COLUMNS[: 2 + r % 3]:
                    clock_ms += 1 + (r >> 40) % 900
                    counter = (counter + 1) & 0xFFFF
                    if clock_ms // 1000 != sec:
                        sec = clock_ms // 1000
                        sec_str = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
                    ts = "%s.%03dZ-%04X-%s" % (sec_str, clock_ms % 1000, counter, node)
                    if col == "amount":
                        val = b"N:%d" % amount
                    elif col == "date":
                        val = b"N:%d" % date
                    elif col == "description":
                        val = b"S:" + payees[pi].encode()
                    else:
                        val = b"S:" + cat.encode()
                    msgs.append((ts, "transactions", tid, col, val))
            db.executemany(
                "INSERT INTO transactions (id, acct, category, amount, description, notes,"
                " date, financial_id, imported_description, cleared, reconciled, sort_order)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", txns)
            db.executemany("INSERT INTO messages_crdt (timestamp, dataset, row, column, value)"
                           " VALUES (?,?,?,?,?)", msgs)
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            psize = db.execute("PRAGMA page_size").fetchone()[0]
            if pages * psize >= target:
                break
        db.execute("INSERT INTO messages_clock VALUES (1, ?)", (json.dumps(
            {"timestamp": f"{clock_ms}-{counter:04X}-{node}", "merkle": {}}),))
        db.execute("COMMIT")
        db.close()

    def copy_budget_db(self, src: str, dst: str, budget_id: str, group_id: str,
                       k: int) -> None:
        """Copy a generated budget and vary it in SQL (much faster than generating)."""
        shutil.copyfile(src, dst)
        db = sqlite3.connect(dst, isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN")
        db.executemany("UPDATE __meta__ SET value = ? WHERE key = ?", [
            (f"Household {budget_id[:4]}", "budgetName"), (group_id, "groupId"),
            (budget_id, "cloudFileId")])
        m = self.rng.randrange(3, 997)
        db.execute("UPDATE transactions SET amount = amount + ((rowid * ?) % 201) - 100,"
                   " cleared = ((rowid * ? + ?) % 13) != 0", (m, m, k))
        db.execute("UPDATE messages_crdt SET value = CAST('N:' || (CAST(substr(value, 3)"
                   " AS INTEGER) + ((id * ?) % 97)) AS BLOB) WHERE column = 'amount'", (m,))
        db.execute("COMMIT")
        db.close()

    def write_budget_files(self, budget_id: str, group_id: str, db_path: str,
                           blob: bytes | None) -> bytes:
        """metadata.json beside the db, and the uploaded snapshot `file-<id>.blob`.

        The sync server keeps each budget's last upload as a zip of db.sqlite; that
        is already compressed, so it is what keeps the instance about 3x compressible.
        Returns the blob so copies can reuse it (a compressed copy of the template).
        """
        bdir = os.path.dirname(db_path)
        meta = {
            "id": f"My-Finances-{budget_id[:7]}",
            "budgetName": f"Household {budget_id[:4]}",
            "cloudFileId": budget_id,
            "groupId": group_id,
            "lastUploaded": "2025-01-15",
            "encryptKeyId": None,
            "resetClock": False,
            "userId": None,
        }
        meta_json = json.dumps(meta, indent=2) + "\n"
        self.write(os.path.join(bdir, "metadata.json"), meta_json)
        if blob is None:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
                z.writestr(zip_info("metadata.json"), meta_json)
                with open(db_path, "rb") as f, z.open(zip_info("db.sqlite"), "w",
                                                       force_zip64=True) as out:
                    shutil.copyfileobj(f, out, 4 * MIB)
            blob = buf.getvalue()
        self.write(os.path.join(self.user_files, f"file-{budget_id}.blob"), blob, 0o640)
        return blob

    def write_group_db(self, budget_db: str, group_id: str, template: str | None) -> str:
        """The server's sync-message database of one budget, from its CRDT messages.

        Each message goes in as the server stores it: its timestamp, and the
        serialized message (dataset, row, column, value) as a blob. A budget that
        is a copy of the first gets a copy of the first's group db.
        """
        path = os.path.join(self.user_files, f"group-{group_id}.sqlite")
        if template is not None:
            shutil.copyfile(template, path)
            return path
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.executescript(GROUP_SCHEMA)
        db.execute("ATTACH DATABASE ? AS budget", (budget_db,))
        db.execute("BEGIN")
        # Field tags and lengths as protobuf frames them (close enough in size).
        db.execute(
            "INSERT INTO messages_binary (timestamp, is_encrypted, content)"
            " SELECT timestamp, 0, CAST(char(10, length(dataset)) || dataset"
            " || char(18, length(row)) || row || char(26, length(column)) || column"
            " || char(34, length(value)) AS BLOB) || value"
            " FROM budget.messages_crdt ORDER BY timestamp")
        # A merkle trie of the message timestamps, as JSON, of a realistic size.
        rng = self.rng
        trie = {"hash": rng.getrandbits(31)}
        for a in "012":
            trie[a] = {b: {"hash": rng.getrandbits(31)} for b in "012"}
        db.execute("INSERT INTO messages_merkles VALUES (1, ?)", (json.dumps(trie),))
        db.execute("COMMIT")
        db.execute("DETACH DATABASE budget")
        db.close()
        return path

    def write_small_files(self, n: int) -> None:
        """N files of 1-8 KB of mixed text in a two-level fan-out of directories."""
        if n == 0:
            return
        rng = self.rng
        # A few MiB of mixed text (prose, CSV, JSON, log lines); files are slices of it.
        parts, size = [], 0
        while size < 4 * MIB:
            kind = rng.randrange(4)
            if kind == 0:
                line = " ".join(rng.choice(TEXT_WORDS) for _ in range(rng.randrange(6, 18)))
            elif kind == 1:
                line = "%s,%s,%d.%02d,%s" % (
                    new_uuid(rng), rng.choice(PAYEES), rng.randrange(1, 999),
                    rng.randrange(100), rng.choice(NOTE_WORDS))
            elif kind == 2:
                line = json.dumps({"ts": EPOCH - rng.randrange(10**7), "level": rng.choice(
                    ["info", "debug", "warn"]), "msg": rng.choice(TEXT_WORDS),
                    "id": "%08x" % rng.getrandbits(32)})
            else:
                line = "%s %s[%d]: %s %s" % (
                    time.strftime("%b %d %H:%M:%S", time.gmtime(EPOCH - rng.randrange(10**7))),
                    rng.choice(["actual-server", "nginx", "sync"]), rng.randrange(100, 99999),
                    rng.choice(TEXT_WORDS), rng.choice(TEXT_WORDS))
            parts.append(line)
            size += len(line) + 1
        corpus = ("\n".join(parts) + "\n").encode()
        base = os.path.join(self.user_files, self.budgets[0], "import-cache")
        exts = [".txt", ".log", ".md", ".csv"]
        made = set()
        for i in range(n):
            d = os.path.join(base, "%02x" % (i % 16), "%02x" % ((i // 16) % 16))
            if d not in made:
                os.makedirs(d, exist_ok=True)
                made.add(d)
            length = rng.randrange(1024, 8193)
            off = rng.randrange(len(corpus) - length)
            header = b"# item %d of %s\n" % (i, self.name.encode())
            body = header + corpus[off: off + length - len(header)]
            with open(os.path.join(d, "item-%06d%s" % (i, exts[i % 4])), "wb") as f:
                f.write(body)

    def assets(self) -> dict:
        """Where the unit and site are, recorded in the registry entry as the
        Python tool records them (so no configuration has to point there)."""
        p, conf = self.prefix, f"abssctl-{self.name}.conf"
        return {
            "systemd_unit": os.path.join(p, "etc", "systemd", "system", f"abssctl-{self.name}.service"),
            "nginx_site": os.path.join(p, "etc", "nginx", "sites-available", conf),
            "nginx_enabled": os.path.join(p, "etc", "nginx", "sites-enabled", conf),
        }

    def write_service_assets(self) -> None:
        a, p = self.args, self.prefix
        unit_dir = os.path.join(p, "etc", "systemd", "system")
        avail = os.path.join(p, "etc", "nginx", "sites-available")
        enabled = os.path.join(p, "etc", "nginx", "sites-enabled")
        for d in (unit_dir, avail, enabled):
            os.makedirs(d, exist_ok=True)
        app = os.path.join(p, "opt", "actual-sync-server", VERSION)
        unit = f"""[Unit]
Description=Actual Budget sync server ({self.name})
Documentation=https://actualbudget.org/docs/
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=actual-sync
Group=actual-sync
WorkingDirectory={self.root}
Environment=NODE_ENV=production
Environment=ACTUAL_PORT={a.port}
Environment=ACTUAL_HOSTNAME=127.0.0.1
Environment=ACTUAL_CONFIG_PATH={self.config}
Environment=ACTUAL_SERVER_FILES={self.server_files}
Environment=ACTUAL_USER_FILES={self.user_files}
ExecStart={app}/bin/actual-server
Restart=on-failure
RestartSec=5
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=strict
ReadWritePaths={self.root}

[Install]
WantedBy=multi-user.target
"""
        self.write(os.path.join(unit_dir, f"abssctl-{self.name}.service"), unit)
        site = f"""# Managed by abssctl: Actual Budget sync server instance {self.name}
server {{
    listen 80;
    listen [::]:80;
    server_name {a.domain};

    client_max_body_size 50m;

    location / {{
        proxy_pass http://127.0.0.1:{a.port};
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_read_timeout 300s;
    }}
}}
"""
        conf = f"abssctl-{self.name}.conf"
        self.write(os.path.join(avail, conf), site)
        link = os.path.join(enabled, conf)
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.path.join("..", "sites-available", conf), link)

    def update_registry(self) -> str:
        reg_dir = os.path.join(self.prefix, "var", "lib", "abssctl", "registry")
        os.makedirs(reg_dir, exist_ok=True)
        path = os.path.join(reg_dir, "instances.yml")
        entry = registry_entry(self.name, self.args.domain, self.args.port, VERSION,
                               self.root, self.data, self.config, self.assets())
        old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
        new = merge_registry(old, self.name, entry)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
        return path

    def fix_mtimes(self) -> None:
        """Deterministic mtimes everywhere below the instance root (children first)."""
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=False):
            for n in sorted(filenames) + sorted(dirnames):
                t = self.mtime()
                os.utime(os.path.join(dirpath, n), (t, t), follow_symlinks=False)
            t = self.mtime()
            os.utime(dirpath, (t, t))

    # -- driver ------------------------------------------------------------

    def build(self) -> None:
        a = self.args
        self.make_dirs()
        self.write_config()
        target = int(a.size_mb * MIB)
        # Budget files of at most ~48 MiB (plus their blob); at least two past 4 MiB.
        n = max(1, -(-target // (60 * MIB)), 2 if target >= 4 * MIB else 1)
        self.budgets = [new_uuid(self.rng) for _ in range(n)]
        self.group_ids = [new_uuid(self.rng) for _ in range(n)]
        self.write_account_db()
        self.write(os.path.join(self.data, ".migrate"), MIGRATE_STATE, 0o644)
        fixed = os.path.getsize(os.path.join(self.server_files, "account.sqlite"))
        # Each budget is its db plus a deflated snapshot of about a quarter of that.
        db_total = max(0, target - fixed - n * 8192) / (1 + 1 / DEFLATE_RATIO
                                                         + (GROUP_DB_RATIO if a.group_dbs else 0))
        group_template = None
        if n <= 2:
            # Few budgets: generate each one, with uneven sizes.
            weights = [0.6 + 0.8 * self.rng.random() for _ in range(n)]
            targets = [int(db_total * w / sum(weights)) for w in weights]
            for budget, group, t in zip(self.budgets, self.group_ids, targets):
                path = self.budget_db_path(budget)
                self.generate_budget_db(path, budget, group, t)
                self.write_budget_files(budget, group, path, None)
                if a.group_dbs:
                    self.write_group_db(path, group, None)
        else:
            # Many budgets: generate the first, then copy it and vary the copies.
            first = self.budget_db_path(self.budgets[0])
            self.generate_budget_db(first, self.budgets[0], self.group_ids[0],
                                    int(db_total / n))
            blob = self.write_budget_files(self.budgets[0], self.group_ids[0], first, None)
            if a.group_dbs:
                group_template = self.write_group_db(first, self.group_ids[0], None)
            for k, (budget, group) in enumerate(zip(self.budgets[1:], self.group_ids[1:]), 1):
                path = self.budget_db_path(budget)
                self.copy_budget_db(first, path, budget, group, k)
                self.write_budget_files(budget, group, path, blob)
                if a.group_dbs:
                    self.write_group_db(path, group, group_template)
        # A private directory (0700) with a private file (0600) beside the budgets.
        priv = os.path.join(self.data, "private")
        os.makedirs(priv)
        self.write(os.path.join(priv, "sync-secret.key"),
                   "%064x\n" % self.rng.getrandbits(256), 0o600)
        os.chmod(priv, 0o700)
        os.symlink(os.path.join("user-files", self.budgets[0]),
                   os.path.join(self.data, "current"))
        self.write_small_files(a.small_files)
        self.write_service_assets()
        self.fix_mtimes()

    def budget_db_path(self, budget_id: str) -> str:
        bdir = os.path.join(self.user_files, budget_id)
        os.makedirs(bdir)
        return os.path.join(bdir, "db.sqlite")


def zip_info(name: str) -> zipfile.ZipInfo:
    """A zip member with a fixed timestamp, so blobs are deterministic."""
    info = zipfile.ZipInfo(name, date_time=(2025, 1, 15, 9, 29, 58))
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def yaml_scalar(v: object) -> str:
    """A scalar as PyYAML safe_dump writes it (enough for registry values)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v)
    plain_ok = (
        s != ""
        and not re.match(r"^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?"
                         r"|[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?"
                         r"|[-+]?\.(?:inf|Inf|INF|nan|NaN|NAN)|[-+]?0x[0-9a-fA-F_]+|[-+]?0b[01_]+|[-+]?0o?[0-7_]+"
                         r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}.*"
                         r"|(?:y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE"
                         r"|on|On|ON|off|Off|OFF|null|Null|NULL|~|=|<<))$", s)
        and not re.search(r"[:#]\s|\s#|^[\s\-?:,\[\]{}#&*!|>'\"%@`]|\s$|[\x00-\x1f]", s)
        and not s.endswith(":")
    )
    return s if plain_ok else "'" + s.replace("'", "''") + "'"


def registry_entry(name, domain, port, version, root, data, config, assets) -> str:
    return "".join([
        f"- name: {yaml_scalar(name)}\n",
        f"  domain: {yaml_scalar(domain)}\n",
        f"  port: {yaml_scalar(port)}\n",
        f"  version: {yaml_scalar(version)}\n",
        "  status: enabled\n",
        "  paths:\n",
        f"    root: {yaml_scalar(root)}\n",
        f"    data: {yaml_scalar(data)}\n",
        f"    config: {yaml_scalar(config)}\n",
        *(f"    {k}: {yaml_scalar(v)}\n" for k, v in assets.items()),
        "  metadata: {}\n",
    ])


def merge_registry(old: str, name: str, entry: str) -> str:
    """Replace or append `name` in a PyYAML-style `instances:` document.

    Other top-level keys and other entries are kept byte for byte. Entries are the
    column-0 `- ` items under the column-0 `instances:` key (PyYAML's block style).
    """
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(r"^instances:", ln)), None)
    if start is None:
        head = "".join(lines)
        if head and not head.endswith("\n"):
            head += "\n"
        return head + "instances:\n" + entry
    end = start + 1
    while end < len(lines) and (lines[end].startswith(("-", " ", "#"))
                                or not lines[end].strip()):
        end += 1
    items: list[list[str]] = []
    for ln in lines[start + 1:end]:
        if ln.startswith("- ") or ln.rstrip("\n") == "-":
            items.append([ln])
        elif items:
            items[-1].append(ln)
    name_re = re.compile(r"^(?:- |  )name: ['\"]?([a-z0-9-]+)['\"]?\s*$")

    def item_name(item: list[str]) -> str | None:
        for ln in item:
            m = name_re.match(ln)
            if m:
                return m.group(1)
        return None

    # Replace the entry in place, or append it; `instances: []` becomes a block list.
    texts, placed = [], False
    for item in items:
        if item_name(item) != name:
            texts.append("".join(item))
        elif not placed:
            texts.append(entry)
            placed = True
    if not placed:
        texts.append(entry)
    body = "".join(texts)
    return "".join(lines[:start]) + "instances:\n" + body + "".join(lines[end:])


def dir_size(path: str) -> tuple[int, int]:
    total = count = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(dirpath, f))
            total += st.st_size
            count += 1
    return total, count


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    os.umask(0o022)
    t0 = time.monotonic()
    inst = Instance(args)
    inst.build()
    reg = inst.update_registry()
    if not args.quiet:
        size, count = dir_size(inst.root)
        print(f"sample instance {args.name}: {inst.root}")
        print(f"  {count} files, {size / MIB:.1f} MiB, {len(inst.budgets)} budget(s), "
              f"port {args.port}, domain {args.domain}, {time.monotonic() - t0:.1f}s")
        print(f"  registry: {reg}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
