#!/usr/bin/env bash
# Inside the booted system: create instance NAME the way an operator's host has
# it, with a unit that really runs.
#
#   /srv/NAME/{config.json,data/...}           scripts/sample-instance.py, SIZE_MB
#   /srv/NAME/data/e2e.txt                     "original NAME" (what the tests curl)
#   /etc/systemd/system/abssctl-NAME.service   python3 http.server on 127.0.0.1:PORT
#                                              serving the data directory (its working
#                                              directory: after a swap it serves the new
#                                              tree only if it was restarted)
#   /etc/nginx/sites-available/abssctl-NAME.conf  proxy on 127.0.0.1:NGINX_PORT,
#                                              enabled by a relative link
#   /var/lib/abssctl/registry/instances.yml    entry added
#
# The unit is enabled and started; returns once it answers HTTP.
#
# Usage: instance.sh NAME SIZE_MB PORT NGINX_PORT
set -euo pipefail

name=$1 size_mb=$2 port=$3 nginx_port=$4
here=$(dirname "${BASH_SOURCE[0]}")

python3 "$here/sample-instance.py" / "$name" --size-mb "$size_mb" --port "$port" --force --quiet

echo "original $name" >"/srv/$name/data/e2e.txt"
chmod 0644 "/srv/$name/data/e2e.txt"

cat >"/etc/systemd/system/abssctl-$name.service" <<EOF
[Unit]
Description=Actual Budget sync server ($name), e2e stand-in
After=network.target

[Service]
Type=simple
WorkingDirectory=/srv/$name/data
ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory . $port
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
EOF

cat >"/etc/nginx/sites-available/abssctl-$name.conf" <<EOF
# Managed by abssctl: Actual Budget sync server instance $name (e2e)
server {
    listen 127.0.0.1:$nginx_port;
    server_name $name.example.test;
    location / {
        proxy_pass http://127.0.0.1:$port;
    }
}
EOF
ln -sfn "../sites-available/abssctl-$name.conf" "/etc/nginx/sites-enabled/abssctl-$name.conf"

systemctl daemon-reload
systemctl enable --now --quiet "abssctl-$name.service"

for _ in $(seq 1 100); do
  if curl -fs -o /dev/null "http://127.0.0.1:$port/e2e.txt"; then
    exit 0
  fi
  sleep 0.1
done
echo "instance.sh: abssctl-$name.service does not answer on 127.0.0.1:$port" >&2
systemctl status --no-pager "abssctl-$name.service" >&2 || true
exit 1
