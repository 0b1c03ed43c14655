#!/usr/bin/env bash
# Pod start benchmark: from the create request to the first HTTP 200 through the pod URL, for a
# busybox httpd image already in the server's store (one untimed warm-up run pulls it first).
# BENCH_RUNS runs (default 10), each a pod of its own, stopped before the next; prints
# min / median / max in ms; then the same under gVisor (`"runtime": "gvisor"`) if runsc is
# installed, with the ratio gVisor / runc. If podman is installed, the same for
#   podman run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 -p PORT:80
# with the same image, and the ratio berth / podman of the medians. Then a deployment of the
# same image: its cold start, from a request after scale-to-zero (its container stopped) to the
# first byte of the answer, which the wake-on-request path holds until the pod accepts.
# Starts its own registry (docker-registry, the image pushed with skopeo) and its own berth
# server (temporary state, its own ports, subnet and bridge); stops every pod and container it
# made and removes everything else. Needs root and scripts/install.sh --deps-only.
#   BERTH=path/to/berth BENCH_RUNS=10 bench/create.sh   (default BERTH: target/release/berth)
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
api=127.0.0.1:17481
ingress_port=17482
registry=127.0.0.1:17483
podman_port=17484
bridge=berthbench1
image=$registry/bench/busybox-httpd:latest
pods=()
podman_cids=()
podman_pulled=
. bench/lib/image.sh
. bench/lib/api.sh

cleanup() {
    set +e
    for cid in "${podman_cids[@]}"; do podman rm -f -t 0 "$cid" >/dev/null 2>&1; done
    [ -n "$podman_pulled" ] && podman rmi -f "$image" >/dev/null 2>&1
    if [ -n "${server:-}" ]; then
        # The server leaves running pods running when it stops: stop them first.
        [ -n "${deployed:-}" ] && api_call DELETE /v1/deployments/bench-web >/dev/null
        for id in "${pods[@]}" $(live_ids); do stop_pod "$id"; done
        kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    fi
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if grep -q " $work" /proc/mounts; then
        echo "warning: mounts still live under $work; leaving it" >&2
    else
        rm -rf "$work"
    fi
    ip link show "$bridge" >/dev/null 2>&1 && echo "warning: the bridge $bridge is still there" >&2
}
trap cleanup EXIT

echo "=> Registry and image"
start_registry "$registry"

# A one-layer OCI image: busybox-static serving /www on port 80.
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd; do ln -s busybox "$root/bin/$applet"; done
echo "hello from the create benchmark" >"$root/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
chmod 1777 "$root/tmp"
push_rootfs "$root" "$image" '["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' 80

echo "=> berth server ($bin)"
BERTH_PROFILE=$work/profile.json "$bin" server --state-dir "$work/state" --api-listen "$api" \
    --ingress-listen "127.0.0.1:$ingress_port" --domain berth.bench --insecure-registry "$registry" \
    --stop-timeout 1 --pod-subnet-v4 10.217.0.0/16 --pod-subnet-v6 none --bridge "$bridge" \
    >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
token=$(cat "$work/state/admin-token")

berth_run() { # berth_run TAG [RUNTIME]: sets run_ms, the ms from the create request to the first 200
    local start created id url runtime=${2:-runc}
    start=$(now_us)
    created=$(api_call POST /v1/containers \
        "{\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1, \"runtime\": \"$runtime\", \"env\": {\"BENCH_RUN\": \"$1-$$\"}}")
    # jq, not Python: an interpreter's start inside the timed span would count as berth's.
    id=$(jq -er .id <<<"$created") || { echo "create failed: $created" >&2; return 1; }
    pods+=("$id")
    url=$(jq -r '.urls[0]' <<<"$created")
    first_200 "$url" --connect-to "::127.0.0.1:" || { api_call GET "/v1/containers/$id" >&2; return 1; }
    run_ms=$((($(now_us) - start) / 1000))
    stop_pod "$id"
}

podman_run() { # podman_run: sets run_ms, the ms from podman run to the first 200
    local start cid
    start=$(now_us)
    cid=$(podman run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -p "127.0.0.1:$podman_port:80" "$image")
    podman_cids+=("$cid")
    first_200 "http://127.0.0.1:$podman_port/"
    run_ms=$((($(now_us) - start) / 1000))
    podman rm -f -t 0 "$cid" >/dev/null
}

echo "=> berth: a warm-up run (pulls the image), then $runs runs"
berth_run warmup
phases_before=$(phase_sums)
berth_times=()
for i in $(seq "$runs"); do
    berth_run "$i"
    berth_times+=("$run_ms")
done
read -r b_min b_med b_max < <(printf '%s\n' "${berth_times[@]}" | stats)
phases_line=$(start_phases "$phases_before" "$(phase_sums)")

gvisor_line="runsc not installed: no gVisor figures"
if command -v runsc >/dev/null; then
    echo "=> berth under gVisor: a warm-up run, then $runs runs"
    berth_run gvisor-warmup gvisor
    gvisor_times=()
    for i in $(seq "$runs"); do
        berth_run "gvisor-$i" gvisor
        gvisor_times+=("$run_ms")
    done
    read -r g_min g_med g_max < <(printf '%s\n' "${gvisor_times[@]}" | stats)
    gvisor_line=$(awk -v b="$b_med" -v g="$g_med" -v min="$g_min" -v max="$g_max" 'BEGIN {
        printf "berth gVisor -> first 200:  min %6d  median %8.1f  max %6d ms\n", min, g, max
        printf "ratio gVisor / runc (medians): %.2fx (what the user-space kernel costs at start)", g / b}')
fi

echo "=> berth: a deployment of the image, then $runs cold starts after scale-to-zero"
deployed=1
api_call POST /v1/deployments \
    "{\"name\": \"bench-web\", \"pod\": {\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1}}" >/dev/null
dep_url="http://bench-web-80.berth.bench:$ingress_port/"
first_200 "$dep_url" --connect-to "::127.0.0.1:"
cold_times=()
for _ in $(seq "$runs"); do
    for id in $(live_ids); do stop_pod "$id"; done
    read -r code ttfb < <(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}\n' --max-time 90 \
        --connect-to "::127.0.0.1:" "$dep_url")
    [ "$code" = 200 ] || { echo "a cold request to the deployment answered $code" >&2; exit 1; }
    cold_times+=("$(awk -v s="$ttfb" 'BEGIN {printf "%d", s * 1000}')")
done
read -r c_min c_med c_max < <(printf '%s\n' "${cold_times[@]}" | stats)

podman_line="podman not installed: no ratio"
if command -v podman >/dev/null; then
    echo "=> podman: pull, a warm-up run, then $runs runs"
    podman pull -q --tls-verify=false "$image" >/dev/null
    podman_pulled=1
    podman_run
    podman_times=()
    for _ in $(seq "$runs"); do
        podman_run
        podman_times+=("$run_ms")
    done
    read -r p_min p_med p_max < <(printf '%s\n' "${podman_times[@]}" | stats)
    podman_line=$(awk -v b="$b_med" -v p="$p_med" -v min="$p_min" -v max="$p_max" 'BEGIN {
        printf "podman run -> first 200:   min %6d  median %8.1f  max %6d ms\n", min, p, max
        printf "ratio berth / podman (medians): %.2fx", b / p}')
fi

echo
echo "create -> first HTTP 200, cached busybox httpd image, $runs runs ($bin)"
printf 'berth create -> first 200:  min %6d  median %8.1f  max %6d ms  (runc, seccomp, egress rules)\n' "$b_min" "$b_med" "$b_max"
echo "  server-side mean per phase (runc runs, ms): $phases_line"
echo "$gvisor_line"
printf 'deployment cold start:      min %6d  median %8.1f  max %6d ms  (request -> first byte after scale-to-zero)\n' \
    "$c_min" "$c_med" "$c_max"
echo "$podman_line"
