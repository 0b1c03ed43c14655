#!/usr/bin/env bash
# Ingress throughput: requests/s and p99 latency through berth's ingress, and through nginx and
# Caddy proxying the same backend in the same run, with wrk over HTTP/1.1 keep-alive (plain and
# TLS) and h2load over HTTP/2 (TLS). Prints each figure and the ratios berth / nginx and
# berth / Caddy (req/s: higher is better for berth above 1; p99: lower is better below 1).
#
# The backend is nginx in a berth pod (a Debian rootfs made with mmdebstrap, answering a
# small fixed body), so it is never the bottleneck; nginx and Caddy on the host proxy to the
# pod's address directly, with keep-alive upstream connections as berth uses. The pod URL is
# <stub>-80.localhost (libnss-myhostname resolves it for wrk and h2load); TLS for nginx and
# Caddy uses an ECDSA certificate from a throwaway CA, like berth's local CA.
# Starts its own registry, berth server (release build), nginx and Caddy on loopback ports and
# removes everything it made. Needs root and: docker-registry skopeo mmdebstrap wrk h2load
# nginx caddy openssl (apt install wrk nghttp2-client nginx-light caddy).
#   BERTH=path/to/berth BENCH_SECONDS=10 BENCH_CONNECTIONS=64 BENCH_ROUNDS=3 BENCH_INGRESS_THREADS=2 bench/ingress.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BERTH:-target/release/berth}
seconds=${BENCH_SECONDS:-10}
conns=${BENCH_CONNECTIONS:-64}
rounds=${BENCH_ROUNDS:-3}
# Two event-loop threads, as nginx runs two workers here; 0 measures the default (the
# server's shared runtime).
ingress_threads=${BENCH_INGRESS_THREADS:-2}
[ -x "$bin" ] || { echo "no berth binary at $bin: build it (cargo build --release -p berth -p berth-shim) or set BERTH" >&2; exit 1; }
for tool in docker-registry skopeo mmdebstrap wrk h2load nginx caddy openssl curl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt install wrk nghttp2-client nginx-light caddy; scripts/install.sh --deps-only)" >&2; exit 1; }
done

work=$(mktemp -d)
api=127.0.0.1:17581
plain_port=17582
tls_port=17583
registry=127.0.0.1:17584
nginx_port=17585
nginx_tls_port=17586
caddy_port=17587
caddy_tls_port=17588
bridge=berthbench2
image=$registry/bench/nginx-backend:latest
. bench/lib/image.sh
. bench/lib/api.sh

start_server() { # start_server [FLAGS...]: berth server on the bench's ports and state
    BERTH_PROFILE=$work/profile.json "$bin" server --state-dir "$work/state" --api-listen "$api" \
        --ingress-listen "[::]:$plain_port" --domain localhost --insecure-registry "$registry" \
        --stop-timeout 1 --pod-subnet-v4 10.221.0.0/16 --pod-subnet-v6 none --bridge "$bridge" \
        --ingress-threads "$ingress_threads" "$@" >>"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -fsS "http://$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -fsS "http://$api/healthz" >/dev/null || { tail -20 "$work/server.log" >&2; exit 1; }
    token=$(cat "$work/state/admin-token")
}

cleanup() {
    set +e
    [ -n "${nginx_pid:-}" ] && kill "$nginx_pid" 2>/dev/null
    [ -n "${caddy_pid:-}" ] && kill "$caddy_pid" 2>/dev/null && wait "$caddy_pid" 2>/dev/null
    if [ -n "${server:-}" ]; then
        [ -n "${pod:-}" ] && api_call POST "/v1/containers/$pod/stop" '{}' >/dev/null
        sleep 2
        kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    fi
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
    if grep -q " $work" /proc/mounts; then echo "warning: mounts still live under $work; leaving it" >&2; else rm -rf "$work"; fi
    ip link show "$bridge" >/dev/null 2>&1 && echo "warning: the bridge $bridge is still there" >&2
}
trap cleanup EXIT

echo "=> Backend image: nginx on a Debian rootfs (mmdebstrap)"
start_registry "$registry"
root=$work/rootfs
mmdebstrap --quiet --variant=apt --include=nginx-light bookworm "$root" >"$work/mmdebstrap.log" 2>&1 \
    || { tail -20 "$work/mmdebstrap.log" >&2; exit 1; }
cat >"$root/etc/nginx/nginx.conf" <<'CONF'
user root;
worker_processes 2;
pid /tmp/nginx.pid;
error_log stderr;
events { worker_connections 4096; }
http {
    access_log off;
    server { listen 80 reuseport backlog=4096; location / { return 200 "hello from the backend\n"; } }
}
CONF
push_rootfs "$root" "$image" '["nginx", "-g", "daemon off;"]' 80

echo "=> berth server ($bin) and the backend pod"
start_server
created=$(api_call POST /v1/containers "{\"image\": \"$image\", \"ports\": [80], \"keep_warm_seconds\": -1}")
pod=$(json_field 'd["id"]' <<<"$created")
stub=$(json_field 'd["stub_id"]' <<<"$created")
host=$stub-80.localhost
for _ in $(seq 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$host:$plain_port/")" = 200 ] && break
    sleep 0.1
done
pod_ip=$(ip -n "berth-${pod#pod-}" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1)
[ -n "$pod_ip" ] || { echo "no address for $pod" >&2; exit 1; }

echo "=> nginx and Caddy proxying $pod_ip:80"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
    -days 1 -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/leaf.key" -out "$work/leaf.csr" -subj "/CN=$host" 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$host" >"$work/leaf.ext"
openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -out "$work/leaf.pem" -days 1 -extfile "$work/leaf.ext" 2>/dev/null
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    upstream pod { server $pod_ip:80; keepalive 128; }
    server {
        listen [::]:$nginx_port ipv6only=off;
        listen [::]:$nginx_tls_port ssl http2 ipv6only=off;
        ssl_certificate $work/leaf.pem;
        ssl_certificate_key $work/leaf.key;
        location / { proxy_pass http://pod; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
nginx -c "$work/nginx.conf" -p "$work" &
nginx_pid=$!
cat >"$work/Caddyfile" <<CONF
{
    admin off
    auto_https off
}
http://$host:$caddy_port {
    reverse_proxy $pod_ip:80
}
https://$host:$caddy_tls_port {
    tls $work/leaf.pem $work/leaf.key
    reverse_proxy $pod_ip:80
}
CONF
XDG_DATA_HOME=$work/caddy XDG_CONFIG_HOME=$work/caddy caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 &
caddy_pid=$!
sleep 2

wrk_run() { # wrk_run URL -> "req/s p99-ms"
    wrk -t2 -c"$conns" -d"${seconds}s" --latency "$1" 2>/dev/null | awk '
        /Requests\/sec/ {rps = $2}
        $1 == "99%" {v = $2; if (v ~ /us$/) {sub(/us$/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms$/, "", v)} else if (v ~ /s$/) {sub(/s$/, "", v); v *= 1000}; p99 = v}
        END {printf "%.0f %.2f\n", rps, p99}'
}
h2_run() { # h2_run URL -> "req/s"
    h2load -t2 -c"$conns" -m10 -D"$seconds" "$1" 2>/dev/null | awk '/^finished in/ {gsub(",", ""); print int($4)}'
}
ratio() { python3 -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print('%.2f' % (a / b) if b else 'n/a')" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

# Each round measures berth, nginx and Caddy one after another, so a burst of load from
# elsewhere on a shared machine hits one round of all three rather than one proxy's only
# run; each figure is the median over the rounds, with its range.
declare -A rps p99 runs_rps runs_p99
rounds() { # rounds PROTO TOOL URL-berth URL-nginx URL-caddy
    local proto=$1 tool=$2 name url r p
    shift 2
    for _ in $(seq "$rounds"); do
        for name in berth nginx caddy; do
            url=$1
            case $name in nginx) url=$2 ;; caddy) url=$3 ;; esac
            if [ "$tool" = wrk ]; then read -r r p < <(wrk_run "$url"); else r=$(h2_run "$url"); p=0; fi
            runs_rps[$name-$proto]+="$r "
            runs_p99[$name-$proto]+="$p "
        done
    done
    for name in berth nginx caddy; do
        # shellcheck disable=SC2086 # word splitting of the recorded runs is wanted
        rps[$name-$proto]=$(median ${runs_rps[$name-$proto]})
        # shellcheck disable=SC2086
        p99[$name-$proto]=$(median ${runs_p99[$name-$proto]})
        if [ "$tool" = wrk ]; then
            printf '  %-12s %9s req/s   p99 %7s ms   (req/s per round: %s)\n' "$name-$proto" \
                "${rps[$name-$proto]}" "${p99[$name-$proto]}" "${runs_rps[$name-$proto]% }"
        else
            printf '  %-12s %9s req/s   (per round: %s)\n' "$name-$proto" "${rps[$name-$proto]}" "${runs_rps[$name-$proto]% }"
        fi
    done
}

echo "=> HTTP/1.1 keep-alive, plain ($conns connections, ${seconds}s per run, $rounds rounds)"
rounds http wrk "http://$host:$plain_port/" "http://$host:$nginx_port/" "http://$host:$caddy_port/"

echo "=> berth server again, with --tls (the pod is adopted)"
kill "$server" && wait "$server" 2>/dev/null || true
start_server --tls --ingress-tls-listen "[::]:$tls_port"
for _ in $(seq 100); do
    curl -s -o /dev/null --cacert "$work/state/tls/ca.pem" "https://$host:$tls_port/" && break
    sleep 0.1
done
echo "=> HTTP/1.1 keep-alive over TLS"
rounds https wrk "https://$host:$tls_port/" "https://$host:$nginx_tls_port/" "https://$host:$caddy_tls_port/"

echo "=> HTTP/2 over TLS (h2load, 10 streams per connection)"
rounds h2 h2load "https://$host:$tls_port/" "https://$host:$nginx_tls_port/" "https://$host:$caddy_tls_port/"

echo
echo "Ratios of the medians (berth / peer): req/s higher is better, p99 lower is better"
for proto in http https; do
    for peer in nginx caddy; do
        printf '  %-6s vs %-6s req/s %s   p99 %s\n' "$proto" "$peer" \
            "$(ratio "${rps[berth-$proto]}" "${rps[$peer-$proto]}")" \
            "$(ratio "${p99[berth-$proto]}" "${p99[$peer-$proto]}")"
    done
done
for peer in nginx caddy; do
    printf '  %-6s vs %-6s req/s %s\n' "h2" "$peer" "$(ratio "${rps[berth-h2]}" "${rps[$peer-h2]}")"
done
