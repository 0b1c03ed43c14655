#!/usr/bin/env bash
# Starts berth's server, launches a demo pod and fetches its URL. The demo image is built
# here (busybox httpd) and served from a registry on loopback, so no internet is needed;
# real images come from Docker Hub by default (berth run --image jupyter/base-notebook).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
state=${BERTH_STATE_DIR:-/var/lib/berth}
registry=127.0.0.1:5000
step() { printf '=> %s\n' "$*"; }

if ! curl -fsS "http://$registry/v2/" >/dev/null 2>&1; then
    step "Starting a local registry on $registry"
    mkdir -p /var/lib/berth-registry
    cat > /var/lib/berth-registry/config.yml <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/berth-registry/data
http:
  addr: $registry
YML
    nohup docker-registry serve /var/lib/berth-registry/config.yml >/var/log/berth-registry.log 2>&1 &
    for _ in $(seq 50); do curl -fsS "http://$registry/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
fi

step "Building the demo image"
"$here/scripts/demo-image.sh" "$registry/berth-demo:latest"

if ! curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1; then
    step "Starting berth server (log: /var/log/berth.log, moved to berth.log.1 past 64 MiB)"
    # The server writes and rotates its own log; stderr only carries a refusal to start
    # before the log is open, like an unwritable --log-file.
    nohup berth server --state-dir "$state" --insecure-registry "$registry" \
        --log-file /var/log/berth.log >>/var/log/berth.log 2>&1 &
    for _ in $(seq 100); do curl -fsS http://127.0.0.1:7070/healthz >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS http://127.0.0.1:7070/healthz >/dev/null || { tail -20 /var/log/berth.log; exit 1; }
fi

out=$(berth run --image "$registry/berth-demo:latest" --keep-warm-seconds 600)
printf '%s\n' "$out"
url=$(printf '%s\n' "$out" | sed -n 's/.*Container hosted at: //p' | head -1)
step "Fetching $url"
for _ in $(seq 50); do curl -fsS "$url" && exit 0; sleep 0.1; done
echo "error: $url did not answer" >&2
exit 1
