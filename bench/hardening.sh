#!/usr/bin/env bash
# What each hardening layer costs a pod's start: create request -> first HTTP 200 through the
# pod URL, cached busybox httpd image, for
#   plain runc      no seccomp filter (a server with --unsafe-no-seccomp), privileged_user
#   + seccomp       the default filter, privileged_user
#   + user ns       no filter, a user namespace of its own
#   berth default   the filter and a user namespace (what a runc pod gets)
#   gVisor          runsc (if installed)
# Each layer's runs are interleaved with the others' (a burst of load on this shared machine
# hits one round of every layer), then min / median / max and the ratio of each median to
# plain runc's. Starts its own registry and berth servers (temporary state, own ports, subnet
# and bridge) and removes everything it made. Needs root and scripts/install.sh --deps-only.
#   BERTH=path/to/berth BENCH_RUNS=10 bench/hardening.sh   (default BERTH: target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
runs=${BENCH_RUNS:-10}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive number, not $runs" >&2; exit 1; }
for tool in docker-registry skopeo curl python3 jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: bash scripts/install.sh --deps-only" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17491
ingress_port=17492
registry=127.0.0.1:17493
bridge=berthbench3
image=$registry/bench/busybox-httpd:latest
. bench/lib/image.sh
. bench/lib/api.sh

stop_server() {
    [ -n "${server:-}" ] || return 0
    for id in $(live_ids); do stop_pod "$id"; done
    kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    server=
}

cleanup() {
    set +e
    stop_server
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if grep -q " $work" /proc/mounts; then
        echo "warning: mounts still live under $work; leaving it" >&2
    else
        rm -rf "$work"
    fi
    ip link show "$bridge" >/dev/null 2>&1 && echo "warning: the bridge $bridge is still there" >&2
}
trap cleanup EXIT

start_server() { # start_server [FLAGS...]: a berth server on the benchmark's ports and state
    BERTH_PROFILE=$work/profile.json "$bin" server --state-dir "$work/state" --api-listen "$api" \
        --ingress-listen "127.0.0.1:$ingress_port" --domain berth.bench --insecure-registry "$registry" \
        --stop-timeout 1 --pod-subnet-v4 10.222.0.0/16 --pod-subnet-v6 none --bridge "$bridge" "$@" \
        >>"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
    token=$(cat "$work/state/admin-token")
}

timed_run() { # timed_run EXTRA-JSON: sets run_ms, create request -> first 200
    local start created id url
    start=$(now_us)
    created=$(api_call POST /v1/containers \
        "{\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1, \"env\": {\"BENCH_RUN\": \"$RANDOM$RANDOM\"}$1}")
    # jq, not Python: an interpreter's start inside the timed span would outweigh the layers.
    id=$(jq -er .id <<<"$created") || { echo "create failed: $created" >&2; return 1; }
    url=$(jq -r '.urls[0]' <<<"$created")
    first_200 "$url" --connect-to "::127.0.0.1:" || { api_call GET "/v1/containers/$id" >&2; return 1; }
    run_ms=$((($(now_us) - start) / 1000))
    stop_pod "$id"
}

declare -A times extra
measure() { # measure LAYER...: a warm-up run of each, then $runs interleaved rounds
    local layer
    for layer in "$@"; do timed_run "${extra[$layer]}"; done
    for _ in $(seq "$runs"); do
        for layer in "$@"; do
            timed_run "${extra[$layer]}"
            times[$layer]+="$run_ms "
        done
    done
}

echo "=> Registry and image"
start_registry "$registry"
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd; do ln -s busybox "$root/bin/$applet"; done
echo "hello from the hardening benchmark" >"$root/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
chmod 1777 "$root/tmp"
push_rootfs "$root" "$image" '["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' 80

extra[plain]=', "privileged_user": true'
extra[userns]=''
extra[seccomp]=', "privileged_user": true'
extra[default]=''
extra[gvisor]=', "runtime": "gvisor"'

echo "=> berth server with no seccomp filter: plain runc and + user namespace, $runs rounds"
start_server --unsafe-no-seccomp
measure plain userns
stop_server

layers=(seccomp default)
command -v runsc >/dev/null && layers+=(gvisor)
echo "=> berth server as shipped: ${layers[*]}, $runs rounds"
start_server
measure "${layers[@]}"
stop_server

read -r _ plain_med _ < <(printf '%s\n' ${times[plain]} | stats)
echo
echo "create -> first HTTP 200, cached busybox httpd image, $runs runs each ($bin)"
for layer in plain seccomp userns default gvisor; do
    [ -n "${times[$layer]:-}" ] || { echo "$layer: not measured (runsc not installed)"; continue; }
    # shellcheck disable=SC2086 # the recorded runs split into numbers
    read -r min med max < <(printf '%s\n' ${times[$layer]} | stats)
    case $layer in
        plain) label="plain runc" ;; seccomp) label="+ seccomp" ;; userns) label="+ user namespace" ;;
        default) label="seccomp + user ns" ;; gvisor) label="gVisor" ;;
    esac
    awk -v l="$label" -v min="$min" -v med="$med" -v max="$max" -v base="$plain_med" 'BEGIN {
        printf "%-18s min %6d  median %8.1f  max %6d ms   %.2fx plain runc\n", l, min, med, max, med / base}'
done
