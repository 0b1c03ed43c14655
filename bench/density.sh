#!/usr/bin/env bash
# Density benchmark: 100, then 300 idle pods (busybox httpd, cached image) on one server.
# At each size it prints the server's RSS, each berth-shim's own memory (USS: its private
# pages; min / median / max), the host memory each pod takes beyond its app (the shim's USS
# plus the kernel memory each pod adds: namespaces, veth, mounts, cgroup, page tables), the
# time the creates took (in waves of BENCH_WAVE, default 50, each wave's creates sent at
# once), and the API's list latency (GET /v1/containers, min /
# median / max of 20). If podman is installed, the same for BENCH_PODMAN_PODS (default 100)
# idle `podman run -d` containers of the same image: conmon's USS and the create time, with
# the ratios. Starts its own registry and berth server (temporary state, its own ports,
# subnet and bridge); stops every pod and container it made and removes everything else.
# Needs root and scripts/install.sh --deps-only.
#   BERTH=path/to/berth BENCH_SIZES="100 300" bench/density.sh   (default BERTH: target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
sizes=${BENCH_SIZES:-100 300}
wave=${BENCH_WAVE:-50}
podman_pods=${BENCH_PODMAN_PODS:-100}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
for n in $sizes $wave $podman_pods; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "sizes must be positive numbers, not $n" >&2; exit 1; }
done
for tool in docker-registry skopeo curl jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: bash scripts/install.sh --deps-only" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17501
registry=127.0.0.1:17503
bridge=berthbench3
image=$registry/bench/busybox-httpd:latest
podman_cids=()
podman_pulled=
. bench/lib/image.sh
. bench/lib/api.sh

stop_all() { # stops every live pod, many at a time
    local ids
    ids=$(live_ids)
    [ -n "$ids" ] || return 0
    # (ID is xargs' placeholder: `{}` would also replace the empty JSON body)
    printf '%s\n' $ids | xargs -P 16 -I ID curl -sS -o /dev/null -X POST -H "Authorization: Bearer $token" \
        -H 'content-type: application/json' -d '{}' "http://$api/v1/containers/ID/stop"
    for _ in $(seq 600); do
        [ -z "$(live_ids)" ] && return 0
        sleep 0.2
    done
    echo "warning: pods still live after 120 s" >&2
}

cleanup() {
    set +e
    for cid in "${podman_cids[@]}"; do echo "$cid"; done | xargs -r -P 8 -n 16 podman rm -f -t 0 >/dev/null 2>&1
    [ -n "$podman_pulled" ] && podman rmi -f "$image" >/dev/null 2>&1
    if [ -n "${server:-}" ]; then
        stop_all
        kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    fi
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if grep -q " $work" /proc/mounts; then
        echo "warning: mounts still live under $work; leaving it" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

echo "=> Registry and image"
start_registry "$registry"
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd; do ln -s busybox "$root/bin/$applet"; done
echo "hello from the density benchmark" >"$root/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
chmod 1777 "$root/tmp"
push_rootfs "$root" "$image" '["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' 80

echo "=> berth server ($bin)"
"$bin" server --state-dir "$work/state" --api-listen "$api" --ingress-listen 127.0.0.1:17502 \
    --domain berth.bench --insecure-registry "$registry" --stop-timeout 1 \
    --pod-subnet-v4 10.220.0.0/16 --pod-subnet-v6 none --bridge "$bridge" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
token=$(cat "$work/state/admin-token")

uss_kib() { # uss_kib PID: the process's private memory (KiB)
    awk '/^Private_(Clean|Dirty):/ {s += $2} END {print s + 0}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0
}
rss_mib() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
shim_pids() { pgrep -x berth-shim || true; }

# The kernel's own memory (KiB) that pods add to: unreclaimable slab (namespaces, veths,
# mounts, cgroups, sockets), kernel stacks and page tables. Host-wide used memory moves by
# more than a pod's share with whatever else runs here, so it is not used.
kernel_kib() {
    awk '$1 == "SUnreclaim:" || $1 == "KernelStack:" || $1 == "PageTables:" {s += $2} END {print s}' /proc/meminfo
}

# A pod first, so the pull and the first start's one-time work are not in the figures.
api_call POST /v1/containers "{\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1}" >/dev/null
for _ in $(seq 300); do [ "$(api_call GET /v1/containers | jq '[.containers[] | select(.status == "RUNNING")] | length')" = 1 ] && break; sleep 0.1; done
stop_all
sleep 1
kernel_before=$(kernel_kib)
rss_before=$(rss_mib "$server")

running=0
results=()
for size in $sizes; do
    echo "=> creating pods up to $size (waves of $wave)"
    start=$(now_us)
    while [ "$running" -lt "$size" ]; do
        n=$((size - running < wave ? size - running : wave))
        seq "$n" | xargs -P 16 -I{} curl -sS -o /dev/null -X POST -H "Authorization: Bearer $token" \
            -H 'content-type: application/json' \
            -d "{\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1, \"env\": {\"N\": \"$running-{}\"}}" \
            "http://$api/v1/containers"
        running=$((running + n))
        for _ in $(seq 1200); do
            counts=$(api_call GET /v1/containers | jq -r '[([.containers[] | select(.status == "RUNNING")] | length), ([.containers[] | select(.status == "FAILED")] | length)] | @tsv')
            read -r up failed <<<"$counts"
            [ "$failed" = 0 ] || { echo "$failed pods failed to start" >&2; api_call GET /v1/containers | jq -c '.containers[] | select(.status == "FAILED") | .reason' | head -3 >&2; exit 1; }
            [ "$up" -ge "$running" ] && break
            sleep 0.1
        done
    done
    create_s=$(awk -v us=$(($(now_us) - start)) 'BEGIN {printf "%.1f", us / 1e6}')
    sleep 2
    pids=$(shim_pids)
    shims=$(echo "$pids" | grep -c . || true)
    read -r u_min u_med u_max < <(for p in $pids; do uss_kib "$p"; done | stats)
    list_times=()
    for _ in $(seq 20); do
        list_times+=("$(curl -sS -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" "http://$api/v1/containers" | awk '{printf "%.2f", $1 * 1000}')")
    done
    read -r l_min l_med l_max < <(printf '%s\n' "${list_times[@]}" | stats)
    l_med=$(printf '%s\n' "${list_times[@]}" | sort -n | awk '{a[NR] = $1} END {printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
    per_pod=$(awk -v before="$kernel_before" -v now="$(kernel_kib)" -v shim="$u_med" -v n="$size" \
        'BEGIN {printf "%.0f", (now - before) / n + shim}')
    results+=("$(printf '%4d pods: server RSS %6.1f MiB (%.1f idle) | shim USS min %d median %.0f max %d KiB (%d shims) | beyond the app %s KiB/pod | created in %s s | list median %s ms (min %d, max %d)' \
        "$size" "$(rss_mib "$server")" "$rss_before" "$u_min" "$u_med" "$u_max" "$shims" "$per_pod" "$create_s" "$l_med" "$l_min" "$l_max")")
done

podman_line="podman not installed: no ratio"
if command -v podman >/dev/null; then
    echo "=> podman: $podman_pods idle containers of the same image"
    podman pull -q --tls-verify=false "$image" >/dev/null
    podman_pulled=1
    start=$(now_us)
    for i in $(seq "$podman_pods"); do
        podman_cids+=("$(podman run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$image")")
    done
    podman_s=$(awk -v us=$(($(now_us) - start)) 'BEGIN {printf "%.1f", us / 1e6}')
    sleep 2
    read -r c_min c_med c_max < <(for p in $(pgrep -x conmon); do uss_kib "$p"; done | stats)
    berth_shim_med=$(for p in $(shim_pids); do uss_kib "$p"; done | stats | cut -d' ' -f2)
    podman_line=$(printf 'podman, %d containers: conmon USS min %d median %.0f max %d KiB | created in %s s (one after another)\nratio berth-shim / conmon USS (medians): %s' \
        "$podman_pods" "$c_min" "$c_med" "$c_max" "$podman_s" \
        "$(awk -v b="$berth_shim_med" -v c="$c_med" 'BEGIN {printf "%.2fx", b / c}')")
fi

echo
echo "density: idle busybox httpd pods ($bin)"
printf '%s\n' "${results[@]}"
echo "$podman_line"
