#!/usr/bin/env bash
# Installs what berth needs on Debian 12 (runtimes, CNI plugins, iptables, and the tools the
# test suite uses), then builds and installs the berth binary.
#
#   scripts/install.sh               packages + release build into /usr/local/bin/berth
#   scripts/install.sh --deps-only   packages only (CI builds the tests itself)
#   scripts/install.sh --bench-deps  packages, and the peers bench/ measures berth against
#   scripts/install.sh --quickstart  packages + build, then start the server and launch a demo pod
set -euo pipefail

mode=${1:-install}
here=$(cd "$(dirname "$0")/.." && pwd)
step() { printf '=> %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "error: run as root (berth manages namespaces, mounts and cgroups)" >&2
    exit 1
fi

packages=(
    runc runsc                      # OCI runtimes: runc by default, gVisor for untrusted code
    tini                            # the init (tini-static) pods run as PID 1
    containernetworking-plugins     # CNI bridge, host-local, loopback
    iptables iproute2               # NAT rules (through CNI) and network namespaces
    ca-certificates                 # registries over HTTPS
    docker-registry skopeo          # a local OCI registry for tests and the demo image
    busybox-static                  # the demo and test images' userland
    mmdebstrap                      # builds the default base image (Debian with python3)
    libnss-myhostname               # resolves *.localhost (pod URLs) for Python and every glibc program
    python3                         # the Python SDK (from berth import Pod) and berth deploy
    python3-venv                    # the test suite's own tools (schemathesis) in a venv
    libnss3-tools                   # certutil: trust berth's local CA in Chromium/Firefox
    chromium chromium-driver        # the browser test of a notebook over HTTPS
    pebble openssl                  # ACME test server, and test certificates
    tmux                            # the test of berth shell on a real terminal
    wrk                             # load through the ingress (the suite's load test, bench/)
    buildah                         # Dockerfile builds (run by the server, each RUN in runc)
    postgresql                      # the shared state store (--database-url), and its tests
    curl jq
)
if [ "$mode" = "--bench-deps" ]; then
    packages+=(
        podman                      # the peer engine of bench/create.sh, pull.sh, density.sh
        nginx-light caddy           # the peer proxies of bench/ingress.sh
        nghttp2-client              # h2load, the HTTP/2 load generator
    )
fi
missing=()
for p in "${packages[@]}"; do
    [[ $p == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's docker-registry package starts its own service on :5000 where systemd runs; the
# tests and the demo run their own instances on loopback instead.
# PostgreSQL's package starts a cluster on :5432 the same way; tests start their own on a
# socket, and an operator who wants the packaged one enables it again.
for unit in docker-registry postgresql; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
done

if [ "$mode" = "--bench-deps" ]; then
    # Debian's nginx and caddy packages start services on :80; the benches run their own.
    for unit in nginx caddy; do
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
            systemctl disable --now "$unit" >/dev/null 2>&1 || true
        fi
    done
    exit 0
fi

if [ "$mode" = "--deps-only" ]; then
    # The API fuzzing test's schemathesis, pinned, in a venv of its own (PyPI through the
    # host's CA bundle, which a TLS-intercepting proxy may need).
    tools=/opt/berth-test-tools
    schemathesis=4.32.5
    if ! "$tools/venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis"; then
        step "Installing schemathesis $schemathesis into $tools/venv"
        cert=()
        [ -f /etc/ssl/certs/ca-certificates.crt ] && cert=(--cert /etc/ssl/certs/ca-certificates.crt)
        python3 -m venv "$tools/venv"
        "$tools/venv/bin/pip" install -q "${cert[@]}" "schemathesis==$schemathesis"
    fi
    exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi
step "Building berth (release)"
(cd "$here" && cargo build --release --locked -p berth -p berth-shim 2>&1 | grep -E '^(error|warning: unused)' || true)
test -x "$here/target/release/berth" && test -x "$here/target/release/berth-shim" || { echo "error: the build failed; run cargo build -p berth to see why" >&2; exit 1; }
install -m 0755 "$here/target/release/berth" "$here/target/release/berth-shim" /usr/local/bin/
step "Installed /usr/local/bin/berth ($(/usr/local/bin/berth --version))"
# Under systemd, the unit (not enabled): `systemctl enable --now berth`, reload = hot restart.
if [ -d /run/systemd/system ]; then
    install -m 0644 "$here/scripts/berth.service" /etc/systemd/system/berth.service
    systemctl daemon-reload 2>/dev/null || true
    step "Installed /etc/systemd/system/berth.service (systemctl enable --now berth)"
fi

# The SDK is pure Python with no dependencies: copied into the site-packages of the python3
# on PATH (pip would need a build backend, and on Debian's own Python a venv).
site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site"
rm -rf "$site/berth"
cp -r "$here/sdk/python/berth" "$site/berth"
find "$site/berth" -name __pycache__ -prune -exec rm -rf {} +
python3 -c 'from berth import Image, Pod' || { echo "error: the Python SDK did not install into $site" >&2; exit 1; }
step "Installed the Python SDK into $site (from berth import Image, Pod)"

[ "$mode" = "--quickstart" ] && exec "$here/scripts/quickstart.sh"
exit 0
