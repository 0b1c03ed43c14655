# Shared by the benchmarks: a registry on loopback, and OCI images pushed to it.
# Source it; it needs $work (a scratch directory) and docker-registry, skopeo, curl.

start_registry() { # start_registry ADDR: a docker-registry on ADDR, its pid in $registry_pid
    mkdir -p "$work/registry"
    cat >"$work/registry/config.yml" <<CONF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/storage
http:
  addr: $1
CONF
    docker-registry serve "$work/registry/config.yml" >"$work/registry.log" 2>&1 &
    registry_pid=$!
    for _ in $(seq 100); do curl -fsS "http://$1/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
    cat "$work/registry.log" >&2
    return 1
}

push_rootfs() { # push_rootfs ROOTFS IMAGE CMD-JSON PORT: ROOTFS as a one-layer image
    push_layers "$2" "$3" "$4" "$1"
}

push_layers() { # push_layers IMAGE CMD-JSON PORT DIR...: an image with one layer per DIR
    local image=$1 cmd=$2 port=$3 oci=$work/oci-$RANDOM arch n=0 dir
    shift 3
    mkdir -p "$oci/blobs/sha256"
    _blob() {
        local hex size
        hex=$(sha256sum "$1" | cut -d' ' -f1)
        size=$(stat -c %s "$1")
        mv "$1" "$oci/blobs/sha256/$hex"
        echo "sha256:$hex $size"
    }
    local diff_ids=() layers=() digest size
    for dir in "$@"; do
        n=$((n + 1))
        tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -C "$dir" \
            -cf "$oci/layer$n.tar" .
        diff_ids+=("\"sha256:$(sha256sum "$oci/layer$n.tar" | cut -d' ' -f1)\"")
        gzip -n -1 "$oci/layer$n.tar"
        read -r digest size < <(_blob "$oci/layer$n.tar.gz")
        layers+=("{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"$digest\", \"size\": $size}")
    done
    local config_digest config_size manifest_digest manifest_size
    case $(uname -m) in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    cat >"$oci/config.json" <<CONF
{"architecture": "$arch", "os": "linux",
 "config": {"Cmd": $cmd, "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "ExposedPorts": {"$port/tcp": {}}},
 "rootfs": {"type": "layers", "diff_ids": [$(IFS=,; echo "${diff_ids[*]}")]}}
CONF
    read -r config_digest config_size < <(_blob "$oci/config.json")
    cat >"$oci/manifest.json" <<CONF
{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
 "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "$config_digest", "size": $config_size},
 "layers": [$(IFS=,; echo "${layers[*]}")]}
CONF
    read -r manifest_digest manifest_size < <(_blob "$oci/manifest.json")
    echo '{"imageLayoutVersion": "1.0.0"}' >"$oci/oci-layout"
    cat >"$oci/index.json" <<CONF
{"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
 "digest": "$manifest_digest", "size": $manifest_size,
 "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
CONF
    skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$oci:latest" "docker://$image"
    rm -rf "$oci"
}
