#!/usr/bin/env bash
# Pod start benchmark, every figure against a peer measured in the same run. Images are in
# the store already (an untimed warm-up run of each pulls it); each run is a pod of its own,
# stopped before the next; BENCH_RUNS runs (default 10) of each; min / median / max in ms.
#   1. create request -> first HTTP 200 through the pod URL, busybox httpd and python3's
#      http.server (a Debian rootfs made with mmdebstrap), vs
#      `podman run -d --runtime runc -p PORT:80` (with the ulimits this host needs) -> first
#      200 on its published port, same images;
#   2. create -> the process's first log line (it prints one, then execs httpd) and
#      create -> first 200, vs the floor: `runc run -d` of a prepared bundle (the same
#      rootfs, no seccomp, no user namespace) in a network namespace made beforehand, and
#      vs the same with berth's profile (the seccomp filter, capabilities, rlimits, masked
#      paths and cgroup limits of a berth pod's bundle, the init, a user namespace that owns
#      the prepared network namespace, as berth's networks made ahead have): what runc
#      itself spends on the hardening, apart from berth's own work;
#   3. a deployment's cold start (request -> first byte after scale-to-zero) vs 1.;
#   4. create -> first 200 under gVisor, if runsc is installed.
# Also prints the server's mean time per start phase (/metrics) over the runc runs.
# Starts its own registry (docker-registry, images pushed with skopeo) and berth server
# (temporary state, its own ports, subnet and bridge); stops every pod and container it made
# and removes everything else. Needs root and scripts/install.sh --deps-only.
#   BERTH=path/to/berth BENCH_RUNS=10 bench/create.sh   (default BERTH: target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
runs=${BENCH_RUNS:-10}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_RUNS must be a positive number, not $runs" >&2; exit 1; }
for tool in docker-registry skopeo mmdebstrap runc curl jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: bash scripts/install.sh --deps-only" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17481
ingress_port=17482
registry=127.0.0.1:17483
podman_port=17484
bridge=berthbench1
floor_ns=berthfloor$$
floor_host=bfh$$
floor_ip=10.221.0.2
profile_host=bph$$
profile_ip=10.221.0.6
profile_map=4000000000
busybox=$registry/bench/busybox-httpd:latest
python=$registry/bench/python-http:latest
pods=()
podman_cids=()
podman_images=()
floor_ids=()
profile_holder=
. bench/lib/image.sh
. bench/lib/api.sh

cleanup() {
    set +e
    for cid in "${podman_cids[@]}"; do podman rm -f -t 0 "$cid" >/dev/null 2>&1; done
    for img in "${podman_images[@]}"; do podman rmi -f "$img" >/dev/null 2>&1; done
    for id in "${floor_ids[@]}"; do runc --root "$work/runc" delete -f "$id" >/dev/null 2>&1; done
    ip netns del "$floor_ns" 2>/dev/null
    [ -n "$profile_holder" ] && kill "$profile_holder" 2>/dev/null && wait "$profile_holder" 2>/dev/null
    find /sys/fs/cgroup -maxdepth 2 -name "berthfloor$$" -type d -exec rmdir {} + 2>/dev/null
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

echo "=> Registry and images (busybox httpd; python3 on Debian, made with mmdebstrap)"
start_registry "$registry"
# A one-layer OCI image: busybox-static serving /www on port 80.
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd; do ln -s busybox "$root/bin/$applet"; done
echo "hello from the create benchmark" >"$root/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
chmod 1777 "$root/tmp"
push_rootfs "$root" "$busybox" '["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' 80
py_root=$work/python-rootfs
mmdebstrap --quiet --variant=apt --include=python3 bookworm "$py_root" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -20 "$work/mmdebstrap.log" >&2; exit 1; }
mkdir -p "$py_root/www" && echo "hello from python" >"$py_root/www/index.html"
push_rootfs "$py_root" "$python" '["python3", "-m", "http.server", "80", "-d", "/www"]' 80
rm -rf "$py_root"

echo "=> berth server ($bin)"
"$bin" server --state-dir "$work/state" --api-listen "$api" \
    --ingress-listen "127.0.0.1:$ingress_port" --domain berth.bench --insecure-registry "$registry" \
    --stop-timeout 1 --pod-subnet-v4 10.217.0.0/16 --pod-subnet-v6 none --bridge "$bridge" \
    >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
token=$(cat "$work/state/admin-token")

LOG_FIRST='["/bin/sh", "-c", "echo up; exec /bin/httpd -f -p 80 -h /www"]'

berth_run() { # berth_run IMAGE TAG [RUNTIME] [ENTRYPOINT-JSON]: sets run_ms (create -> first 200)
    local start created id url runtime=${3:-runc} entry=
    [ -n "${4:-}" ] && entry=", \"entrypoint\": $4"
    start=$(now_us)
    created=$(api_call POST /v1/containers \
        "{\"image\": \"$1\", \"ports\": [80], \"keep_warm_seconds\": -1, \"runtime\": \"$runtime\", \"env\": {\"BENCH_RUN\": \"$2-$$\"}$entry}")
    # jq, not Python: an interpreter's start inside the timed span would count as berth's.
    id=$(jq -er .id <<<"$created") || { echo "create failed: $created" >&2; return 1; }
    pods+=("$id")
    url=$(jq -r '.urls[0]' <<<"$created")
    first_200 "$url" --connect-to "::127.0.0.1:" || { api_call GET "/v1/containers/$id" >&2; return 1; }
    run_ms=$((($(now_us) - start) / 1000))
    stop_pod "$id"
}

berth_log_run() { # berth_log_run TAG: sets run_ms (create -> the process's first log line)
    local start id
    start=$(now_us)
    id=$(api_call POST /v1/containers \
        "{\"image\": \"$busybox\", \"ports\": [80], \"keep_warm_seconds\": -1, \"entrypoint\": $LOG_FIRST, \"env\": {\"BENCH_RUN\": \"$1-$$\"}}" | jq -er .id)
    pods+=("$id")
    # A followed log ends at once while the pod has none yet: ask again until "up" came.
    # (grep's status, not curl's: curl fails once grep has stopped reading.)
    until grep -q -m1 up < <(curl -sSN --max-time 5 -H "Authorization: Bearer $token" \
        "http://$api/v1/containers/$id/logs?follow=true" 2>/dev/null); do :; done
    run_ms=$((($(now_us) - start) / 1000))
    stop_pod "$id"
}

podman_run() { # podman_run IMAGE: sets run_ms, the ms from podman run to the first 200
    local start cid
    start=$(now_us)
    cid=$(podman run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -p "127.0.0.1:$podman_port:80" "$1")
    podman_cids+=("$cid")
    first_200 "http://127.0.0.1:$podman_port/"
    run_ms=$((($(now_us) - start) / 1000))
    podman rm -f -t 0 "$cid" >/dev/null
}

# The floor: a bundle over the busybox rootfs as `runc spec` makes it (no seccomp, no user
# namespace), joining a namespace with a veth to the host, made before the clock starts.
setup_floor() {
    mkdir -p "$work/floor" "$work/runc"
    (cd "$work/floor" && runc spec)
    jq --arg root "$root" --arg ns "/run/netns/$floor_ns" --argjson args "$LOG_FIRST" '
        .process.terminal = false | .process.args = $args | .root = {path: $root, readonly: false}
        | .linux.namespaces |= map(if .type == "network" then .path = $ns else . end)' \
        "$work/floor/config.json" >"$work/floor/config.new" && mv "$work/floor/config.new" "$work/floor/config.json"
    ip netns add "$floor_ns"
    ip link add "$floor_host" type veth peer name eth0 netns "$floor_ns"
    ip addr add 10.221.0.1/30 dev "$floor_host"
    ip link set "$floor_host" up
    ip -n "$floor_ns" addr add "$floor_ip/30" dev eth0
    ip -n "$floor_ns" link set eth0 up
    ip -n "$floor_ns" link set lo up
}

# The floor with berth's profile: the floor's bundle plus what a berth pod's bundle adds for
# isolation (copied from one, $work/pod-config.json), over a copy of the rootfs owned by the
# mapped ids, in a network namespace owned by a user namespace made before the clock starts.
setup_floor_profile() {
    local pod=$work/pod-config.json
    mkdir -p "$work/floor-profile"
    chmod 711 "$work" # mktemp's 0700 would keep the mapped root from reaching the rootfs
    cp -a "$root" "$work/profile-rootfs"
    mkdir -p "$work/profile-rootfs/run"
    chown -R "$profile_map:$profile_map" "$work/profile-rootfs"
    unshare --user --net sleep infinity &
    profile_holder=$!
    until [ "$(readlink "/proc/$profile_holder/ns/user")" != "$(readlink /proc/self/ns/user)" ]; do sleep 0.01; done
    echo "0 $profile_map 65536" >"/proc/$profile_holder/uid_map"
    echo "0 $profile_map 65536" >"/proc/$profile_holder/gid_map"
    ip link add "$profile_host" type veth peer name eth0 netns "$profile_holder"
    ip addr add 10.221.0.5/30 dev "$profile_host"
    ip link set "$profile_host" up
    nsenter -t "$profile_holder" -n sh -c "ip addr add $profile_ip/30 dev eth0 && ip link set eth0 up && ip link set lo up"
    jq --slurpfile pod "$pod" --arg root "$work/profile-rootfs" --argjson map "$profile_map" \
        --arg userns "/proc/$profile_holder/ns/user" --arg netns "/proc/$profile_holder/ns/net" \
        --arg cgroup "/berthfloor$$/profile" --argjson args "$LOG_FIRST" '
        $pod[0] as $p
        | .root = {path: $root, readonly: false}
        | .process.args = [$p.process.args[0], "-g", "--"] + $args
        | .process.capabilities = $p.process.capabilities | .process.rlimits = $p.process.rlimits
        | .process.noNewPrivileges = $p.process.noNewPrivileges
        | .mounts += [$p.mounts[] | select(.destination == $p.process.args[0])]
        | .linux.uidMappings = [$p.linux.uidMappings[0] | .hostID = $map]
        | .linux.gidMappings = [$p.linux.gidMappings[0] | .hostID = $map]
        | .linux.seccomp = $p.linux.seccomp | .linux.resources = $p.linux.resources
        | .linux.maskedPaths = $p.linux.maskedPaths | .linux.readonlyPaths = $p.linux.readonlyPaths
        | .linux.cgroupsPath = $cgroup
        | .linux.namespaces = [.linux.namespaces[] | select(.type != "network" and .type != "user")]
            + [{type: "network", path: $netns}, {type: "user", path: $userns}, {type: "cgroup"}]
        | .linux.namespaces |= unique_by(.type)' \
        "$work/floor/config.json" >"$work/floor-profile/config.json"
}

capture_pod_config() { # a berth pod's bundle config, for the floor with berth's profile
    local created id
    created=$(api_call POST /v1/containers \
        "{\"image\": \"$busybox\", \"ports\": [80], \"keep_warm_seconds\": -1, \"env\": {\"BENCH_RUN\": \"profile-$$\"}}")
    id=$(jq -er .id <<<"$created")
    pods+=("$id")
    first_200 "$(jq -r '.urls[0]' <<<"$created")" --connect-to "::127.0.0.1:"
    cp "$work/state/containers/$id/bundle/config.json" "$work/pod-config.json"
    stop_pod "$id"
}

floor_run() { # floor_run BUNDLE IP N: sets log_ms (runc run -d -> first log line) and run_ms (-> first 200)
    local start id=berthfloor-$$-$(basename "$1")-$3 out=$work/floor-$(basename "$1")-$3.log
    floor_ids+=("$id")
    start=$(now_us)
    runc --root "$work/runc" run -d --bundle "$1" "$id" </dev/null >"$out" 2>&1 || { cat "$out" >&2; return 1; }
    until grep -q up "$out"; do
        runc --root "$work/runc" state "$id" >/dev/null 2>&1 || { cat "$out" >&2; return 1; }
    done
    log_ms=$((($(now_us) - start) / 1000))
    first_200 "http://$2/"
    run_ms=$((($(now_us) - start) / 1000))
    runc --root "$work/runc" delete -f "$id" >/dev/null
}

series() { # series NAME CMD...: runs CMD $runs times, collecting $run_ms into the array NAME
    local -n into=$1
    shift
    into=()
    for i in $(seq "$runs"); do
        "$@" "$i"
        into+=("$run_ms")
    done
}

med() { printf '%s\n' "$@" | stats | cut -d' ' -f2; }
line() { # line LABEL VALUES...: "LABEL min median max"
    local label=$1 min m max
    shift
    read -r min m max < <(printf '%s\n' "$@" | stats)
    printf '%-40s min %6d  median %8.1f  max %6d ms\n' "$label" "$min" "$m" "$max"
}
ratio() { awk -v a="$2" -v b="$3" -v label="$1" 'BEGIN {printf "  %-58s %.2fx\n", label, a / b}'; }

echo "=> berth, busybox httpd: a warm-up run (pulls the image), then $runs runs"
berth_run "$busybox" warmup
phases_before=$(phase_sums)
series b_busybox berth_run "$busybox"
phases_line=$(start_phases "$phases_before" "$(phase_sums)")

echo "=> berth, python http.server: a warm-up run, then $runs runs"
berth_run "$python" warmup
series b_python berth_run "$python"

echo "=> berth, create -> first log line: $runs runs"
series b_log berth_log_run

echo "=> the floor, runc run -d in a prepared namespace, bare and with berth's profile: $runs runs each"
capture_pod_config
setup_floor
setup_floor_profile
f_log=() f_200=() fp_log=() fp_200=()
for i in $(seq "$runs"); do
    floor_run "$work/floor" "$floor_ip" "$i"
    f_log+=("$log_ms")
    f_200+=("$run_ms")
    floor_run "$work/floor-profile" "$profile_ip" "$i"
    fp_log+=("$log_ms")
    fp_200+=("$run_ms")
done

gvisor_lines="runsc not installed: no gVisor figures"
if command -v runsc >/dev/null; then
    echo "=> berth under gVisor: a warm-up run, then $runs runs"
    berth_run "$busybox" gvisor-warmup gvisor
    runs_gvisor() { berth_run "$busybox" "gvisor-$1" gvisor; }
    series g_busybox runs_gvisor
    gvisor_lines="$(line "berth gVisor create -> first 200" "${g_busybox[@]}")
$(ratio "gVisor / runc (what the user-space kernel costs at start)" "$(med "${g_busybox[@]}")" "$(med "${b_busybox[@]}")")"
fi

echo "=> berth: a deployment of busybox httpd, then $runs cold starts after scale-to-zero"
deployed=1
api_call POST /v1/deployments \
    "{\"name\": \"bench-web\", \"pod\": {\"image\": \"$busybox\", \"ports\": [80], \"keep_warm_seconds\": -1}}" >/dev/null
dep_url="http://bench-web-80.berth.bench:$ingress_port/"
first_200 "$dep_url" --connect-to "::127.0.0.1:"
cold=()
for _ in $(seq "$runs"); do
    for id in $(live_ids); do stop_pod "$id"; done
    read -r code ttfb < <(curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}\n' --max-time 90 \
        --connect-to "::127.0.0.1:" "$dep_url")
    [ "$code" = 200 ] || { echo "a cold request to the deployment answered $code" >&2; exit 1; }
    cold+=("$(awk -v s="$ttfb" 'BEGIN {printf "%d", s * 1000}')")
done

podman_lines="podman not installed: no podman figures"
if command -v podman >/dev/null; then
    echo "=> podman: pull, a warm-up run, then $runs runs of each image"
    for img in "$busybox" "$python"; do
        podman pull -q --tls-verify=false "$img" >/dev/null
        podman_images+=("$img")
        podman_run "$img"
    done
    podman_busybox() { podman_run "$busybox"; }
    podman_python() { podman_run "$python"; }
    series p_busybox podman_busybox
    series p_python podman_python
    podman_lines="$(line "podman run -> first 200, busybox" "${p_busybox[@]}")
$(line "podman run -> first 200, python" "${p_python[@]}")
$(ratio "berth / podman, busybox httpd (target <= 0.35)" "$(med "${b_busybox[@]}")" "$(med "${p_busybox[@]}")")
$(ratio "berth / podman, python http.server" "$(med "${b_python[@]}")" "$(med "${p_python[@]}")")"
fi

echo
echo "pod start, cached images, $runs runs each ($bin; runc $(runc --version | awk 'NR == 1 {print $3}'))"
line "berth create -> first 200, busybox" "${b_busybox[@]}"
echo "  server-side mean per phase (ms): $phases_line"
line "berth create -> first 200, python" "${b_python[@]}"
line "berth create -> first log line" "${b_log[@]}"
line "floor: runc run -d -> first log line" "${f_log[@]}"
line "floor: runc run -d -> first 200" "${f_200[@]}"
ratio "berth / floor, first log line" "$(med "${b_log[@]}")" "$(med "${f_log[@]}")"
ratio "berth / floor, first 200 (target <= 1.5)" "$(med "${b_busybox[@]}")" "$(med "${f_200[@]}")"
line "floor with berth's profile -> first log" "${fp_log[@]}"
line "floor with berth's profile -> first 200" "${fp_200[@]}"
ratio "profile floor / floor, first 200 (runc's hardening)" "$(med "${fp_200[@]}")" "$(med "${f_200[@]}")"
ratio "berth / profile floor, first 200 (berth's own work)" "$(med "${b_busybox[@]}")" "$(med "${fp_200[@]}")"
line "deployment cold start" "${cold[@]}"
ratio "cold start / create -> first 200 (target <= 1.2)" "$(med "${cold[@]}")" "$(med "${b_busybox[@]}")"
echo "$gvisor_lines"
echo "$podman_lines"
