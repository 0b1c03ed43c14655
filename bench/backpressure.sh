#!/usr/bin/env bash
# Responsiveness under queued work: the median latency of GET /healthz, GET /v1/containers
# and a pod's URL through the ingress, first on an idle server, then while 50 pieces of work
# are queued at once: BENCH_CREATES creates of a cached image (default 30), BENCH_PULLS
# creates that each pull an image of their own (default 15, a shared busybox layer plus an
# 8 MiB one of its own) and BENCH_BUILDS image builds (default 5, each hashing 64 MiB in a
# build container). Prints min / median / p95 / max of each, the ratio loaded / idle, and how
# many requests the server refused with 429. Target: loaded medians <= 100 ms.
# Starts its own registry and berth server (temporary state, its own ports, subnet and
# bridge); stops every pod it made and removes everything else. Needs root and
# scripts/install.sh --deps-only.
#   BERTH=path/to/berth bench/backpressure.sh   (default BERTH: target/release/berth)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
creates=${BENCH_CREATES:-30}
pulls=${BENCH_PULLS:-15}
builds=${BENCH_BUILDS:-5}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
for n in $creates $pulls $builds; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "counts must be numbers, not $n" >&2; exit 1; }
done
for tool in docker-registry skopeo curl jq; do
    command -v "$tool" >/dev/null || { echo "$tool is missing: bash scripts/install.sh --deps-only" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17511
ingress=127.0.0.1:17512
registry=127.0.0.1:17513
bridge=berthbench4
domain=berth.bench
base=$registry/bench/httpd:latest
. bench/lib/image.sh
. bench/lib/api.sh

stop_all() {
    local ids
    ids=$(live_ids)
    [ -n "$ids" ] || return 0
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
    [ -n "${prober:-}" ] && kill "$prober" 2>/dev/null
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

echo "=> Registry and images: one cached, $pulls to pull"
start_registry "$registry"
root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
cp /bin/busybox "$root/bin/busybox"
for applet in sh httpd head sha256sum; do ln -s busybox "$root/bin/$applet"; done
echo "hello from the backpressure benchmark" >"$root/www/index.html"
echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
chmod 1777 "$root/tmp"
cmd='["/bin/httpd", "-f", "-p", "80", "-h", "/www"]'
push_rootfs "$root" "$base" "$cmd" 80
for i in $(seq "$pulls"); do
    mkdir -p "$work/data$i/data"
    head -c $((8 << 20)) /dev/urandom >"$work/data$i/data/blob"
    push_layers "$registry/bench/pull$i:latest" "$cmd" 80 "$root" "$work/data$i"
    rm -rf "$work/data$i"
done

echo "=> berth server ($bin)"
"$bin" server --state-dir "$work/state" --api-listen "$api" --ingress-listen "$ingress" \
    --domain "$domain" --insecure-registry "$registry" --stop-timeout 1 \
    --pod-subnet-v4 10.221.0.0/16 --pod-subnet-v6 none --bridge "$bridge" >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
token=$(cat "$work/state/admin-token")

# A pod that stays up, for the ingress probe; it also pulls the base image, so the creates
# below start from the cache.
probe_pod=$(api_call POST /v1/containers "{\"image\": \"$base\", \"ports\": [80], \"keep_warm_seconds\": -1}")
probe_url=$(echo "$probe_pod" | jq -r '.urls[0]')
probe_host=${probe_url#http://}
probe_host=${probe_host%%/*}
first_200 "http://$ingress/" -H "Host: $probe_host"

# probe ROUNDS|until-FILE: rounds of one health, list and ingress request, each on a new
# connection, every 50 ms; prints "health list ingress" in ms per round ("fail" for a non-2xx
# or no answer in 10 s). One process, so the figures are the server's, not process starts.
probe() {
    python3 - "$1" "$api" "$ingress" "$token" "$probe_host" <<'PY'
import http.client, os, sys, time
limit, api, ingress, token, host = sys.argv[1:]
def timed(addr, path, headers):
    h, p = addr.rsplit(":", 1)
    start = time.perf_counter()
    try:
        conn = http.client.HTTPConnection(h, int(p), timeout=10)
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        ok = 200 <= resp.status < 300
    except OSError:
        ok = False
    return f"{(time.perf_counter() - start) * 1000:.2f}" if ok else "fail"
rounds = 0
while (rounds < int(limit)) if limit.isdigit() else not os.path.exists(limit):
    print(timed(api, "/healthz", {}), timed(api, "/v1/containers", {"Authorization": f"Bearer {token}"}),
          timed(ingress, "/", {"Host": host}), flush=True)
    rounds += 1
    time.sleep(0.05)
PY
}
summary() { # summary FILE COLUMN: "min median p95 max samples failures"
    awk -v c="$2" '$c == "fail" {f++; next} {print $c}' "$1" | sort -n |
        awk -v fails="$(awk -v c="$2" '$c == "fail"' "$1" | wc -l)" '{a[NR] = $1} END {
            if (NR == 0) {print "- - - - 0", fails; exit}
            m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            p = a[int(NR * 0.95 + 0.999)]
            printf "%.1f %.1f %.1f %.1f %d %d\n", a[1], m, p, a[NR], NR, fails}'
}

echo "=> Idle: 30 rounds of health, list and ingress"
probe 30 >"$work/idle.txt"

echo "=> Queueing $creates creates, $pulls pulls and $builds builds at once"
queued_at=$(now_us)
request_pids=()
for i in $(seq "$creates"); do
    curl -sS -o "$work/create$i.out" -w '%{http_code}\n' -X POST -H "Authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d "{\"image\": \"$base\", \"ports\": [80], \"keep_warm_seconds\": -1, \"env\": {\"N\": \"$i\"}}" \
        "http://$api/v1/containers" >"$work/create$i.code" &
    request_pids+=($!)
done
for i in $(seq "$pulls"); do
    curl -sS -o "$work/pull$i.out" -w '%{http_code}\n' -X POST -H "Authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d "{\"image\": \"$registry/bench/pull$i:latest\", \"ports\": [80], \"keep_warm_seconds\": -1}" \
        "http://$api/v1/containers" >"$work/pull$i.code" &
    request_pids+=($!)
done
build_pids=()
for i in $(seq "$builds"); do
    curl -sS -o "$work/build$i.out" -w '%{http_code}\n' -H "Authorization: Bearer $token" \
        -H 'content-type: application/json' \
        -d "{\"base_image\": \"$base\", \"commands\": [\"head -c 67108864 /dev/urandom | sha256sum > /sum-$i-$RANDOM\"]}" \
        "http://$api/v1/images/build" >"$work/build$i.code" &
    build_pids+=($!)
done

# Rounds beside the work until it is done.
probe "$work/done" >"$work/loaded.txt" &
prober=$!
# Until every create is RUNNING (or ended) and every build has answered.
want=$((creates + pulls + 1))
for _ in $(seq 1200); do
    builds_left=0
    for p in "${build_pids[@]}"; do kill -0 "$p" 2>/dev/null && builds_left=$((builds_left + 1)); done
    settled=$(api_call GET '/v1/containers?all=true' | jq '[.containers[] | select(.status != "PENDING" and .status != "PULLING" and .status != "BUILDING" and .status != "STARTING")] | length')
    [ "$builds_left" = 0 ] && [ "$settled" -ge "$want" ] && break
    sleep 0.25
done
touch "$work/done"
wait "$prober" 2>/dev/null || true
prober=
# (not a bare `wait`: that would wait for the server too)
for p in "${request_pids[@]}" "${build_pids[@]}"; do wait "$p" || true; done
drained_s=$(awk -v us=$(($(now_us) - queued_at)) 'BEGIN {printf "%.1f", us / 1e6}')
refused=$(cat "$work"/*.code | grep -c '^429' || true)
failed_pods=$(api_call GET '/v1/containers?all=true' | jq '[.containers[] | select(.status == "FAILED")] | length')
failed_builds=$(for i in $(seq "$builds"); do grep -q '"done"' "$work/build$i.out" || echo "$i"; done | wc -l)
[ "$failed_pods" = 0 ] || api_call GET '/v1/containers?all=true' | jq -c '.containers[] | select(.status == "FAILED") | .reason' | head -3 >&2

echo
echo "backpressure: $creates creates + $pulls pulls + $builds builds queued at once ($bin)"
echo "all done ${drained_s} s after queueing; $refused refused with 429; $failed_pods pods and $failed_builds builds failed"
printf '%-9s %-6s %8s %8s %8s %8s %8s %6s\n' request state min median p95 max samples fails
col=0
for what in health list ingress; do
    col=$((col + 1))
    read -r i_min i_med i_p95 i_max i_n i_f < <(summary "$work/idle.txt" "$col")
    read -r l_min l_med l_p95 l_max l_n l_f < <(summary "$work/loaded.txt" "$col")
    printf '%-9s %-6s %8s %8s %8s %8s %8s %6s\n' "$what" idle "$i_min" "$i_med" "$i_p95" "$i_max" "$i_n" "$i_f"
    printf '%-9s %-6s %8s %8s %8s %8s %8s %6s\n' "$what" loaded "$l_min" "$l_med" "$l_p95" "$l_max" "$l_n" "$l_f"
    awk -v w="$what" -v i="$i_med" -v l="$l_med" 'BEGIN {
        printf "ratio %s loaded / idle (medians): %.1fx; loaded median %s 100 ms\n", w, l / i, (l <= 100) ? "<=" : ">"}'
done
