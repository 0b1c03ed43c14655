#!/usr/bin/env bash
# Image pull benchmark: a multi-layer image (a Debian rootfs with python3, then five layers
# of 40 MiB of incompressible data: six layers, about 230 MB compressed) from a registry on
# loopback, pulled BENCH_RUNS times (default 3) each way, every run from an empty store:
#   - berth: a create of a pod with the image, timed to the end of the pull (the server's
#     own "image" phase on /metrics: download, digest check and unpack of every layer);
#   - skopeo copy of the same image to a local OCI directory (download and digest check,
#     no unpack);
#   - podman pull (download, unpack into its overlay storage), if podman is installed.
# Prints min / median / max and the ratios berth / skopeo and berth / podman of the medians.
# Starts its own registry and berth server (temporary state, its own ports, subnet and
# bridge) and removes everything it made. Needs root and scripts/install.sh --deps-only.
#   BERTH=path/to/berth BENCH_RUNS=3 bench/pull.sh   (default BERTH: target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
runs=${BENCH_RUNS:-3}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive number, not $runs" >&2; exit 1; }
for tool in docker-registry skopeo mmdebstrap curl jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: bash scripts/install.sh --deps-only" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17491
registry=127.0.0.1:17493
bridge=berthbench2
image=$registry/bench/layers:latest
podman_roots=()
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
    for root in "${podman_roots[@]}"; do
        podman --root "$root/root" --runroot "$root/run" rmi -af >/dev/null 2>&1
        # podman may bind-mount its overlay directory onto itself
        grep -o " $root/[^ ]*" /proc/mounts | sort -r | xargs -r -n 1 umount -l 2>/dev/null
    done
    stop_server
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if grep -q " $work" /proc/mounts; then
        echo "warning: mounts still live under $work; leaving it" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

echo "=> Registry and a six-layer image"
start_registry "$registry"
base=$work/layer0
mmdebstrap --quiet --variant=apt --include=python3-minimal bookworm "$base" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -20 "$work/mmdebstrap.log" >&2; exit 1; }
dirs=("$base")
for i in 1 2 3 4 5; do
    mkdir -p "$work/layer$i/data"
    head -c $((40 << 20)) /dev/urandom >"$work/layer$i/data/blob$i"
    dirs+=("$work/layer$i")
done
push_layers "$image" '["/bin/true"]' 80 "${dirs[@]}"
bytes=$(skopeo inspect --raw --tls-verify=false "docker://$image" | jq '[.layers[].size] | add')
layers=$(skopeo inspect --raw --tls-verify=false "docker://$image" | jq '.layers | length')
echo "   $layers layers, $((bytes / 1000000)) MB compressed"

# Every run pulls into a store of its own, and the stores are removed only at the end: ext4
# makes new inodes slowly for a while after many were deleted (its allocator skips the
# recently deleted ones), which would bill one run for the clean-up of the one before.
berth_pull() { # berth_pull RUN, sets run_ms: one pull into a fresh server's empty store
    "$bin" server --state-dir "$work/state-$1" --api-listen "$api" --ingress-listen 127.0.0.1:17492 \
        --domain berth.bench --insecure-registry "$registry" --stop-timeout 1 --warm-networks 0 \
        --pod-subnet-v4 10.219.0.0/16 --pod-subnet-v6 none --bridge "$bridge" >>"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    token=$(cat "$work/state-$1/admin-token")
    local before id status
    before=$(phase_sums)
    id=$(api_call POST /v1/containers "{\"image\": \"$image\", \"keep_warm_seconds\": -1}" | jq -er .id)
    for _ in $(seq 1200); do
        status=$(api_call GET "/v1/containers/$id" | jq -r .status)
        case $status in PENDING|PULLING) sleep 0.05 ;; *) break ;; esac
    done
    case $status in STARTING|RUNNING|EXITED) ;; *) api_call GET "/v1/containers/$id" >&2; exit 1 ;; esac
    # The image phase is recorded when the pull is done: wait for it, then read it.
    for _ in $(seq 100); do
        run_ms=$(start_phases "$before" "$(phase_sums)" | awk '{for (i = 1; i < NF; i++) if ($i == "image") printf "%d", $(i + 1)}')
        [ -n "$run_ms" ] && break
        sleep 0.05
    done
    stop_server
}

skopeo_pull() { # skopeo_pull RUN, sets run_ms
    local start
    start=$(now_us)
    skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$image" "oci:$work/oci-$1:latest"
    run_ms=$((($(now_us) - start) / 1000))
}

podman_pull() { # podman_pull RUN, sets run_ms: into a storage of its own, like berth's
    local start
    podman_roots+=("$work/podman-$1")
    start=$(now_us)
    podman --root "$work/podman-$1/root" --runroot "$work/podman-$1/run" pull -q --tls-verify=false "$image" >/dev/null
    run_ms=$((($(now_us) - start) / 1000))
}

b=() s=() p=()
for i in $(seq "$runs"); do
    echo "=> run $i of $runs"
    berth_pull "$i"; b+=("$run_ms")
    skopeo_pull "$i"; s+=("$run_ms")
    if command -v podman >/dev/null; then podman_pull "$i"; p+=("$run_ms"); fi
done
read -r b_min b_med b_max < <(printf '%s\n' "${b[@]}" | stats)
read -r s_min s_med s_max < <(printf '%s\n' "${s[@]}" | stats)

echo
echo "pull of $image ($layers layers, $((bytes / 1000000)) MB), $runs runs each, empty store each time"
printf 'berth pull (download, verify, unpack):  min %6d  median %8.1f  max %6d ms\n' "$b_min" "$b_med" "$b_max"
printf 'skopeo copy to an OCI dir (no unpack):  min %6d  median %8.1f  max %6d ms\n' "$s_min" "$s_med" "$s_max"
awk -v b="$b_med" -v s="$s_med" 'BEGIN {printf "ratio berth / skopeo (medians): %.2fx\n", b / s}'
if [ ${#p[@]} -gt 0 ]; then
    read -r p_min p_med p_max < <(printf '%s\n' "${p[@]}" | stats)
    printf 'podman pull (download, unpack):         min %6d  median %8.1f  max %6d ms\n' "$p_min" "$p_med" "$p_max"
    awk -v b="$b_med" -v p="$p_med" 'BEGIN {printf "ratio berth / podman (medians): %.2fx\n", b / p}'
else
    echo "podman not installed: no podman figure"
fi
