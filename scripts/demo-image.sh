#!/usr/bin/env bash
# Builds a tiny OCI image (busybox httpd serving a page on port 8080) from the host's
# busybox-static and pushes it to REF on a plain-HTTP registry.
#   scripts/demo-image.sh 127.0.0.1:5000/berth-demo:latest
set -euo pipefail
ref=${1:?usage: demo-image.sh REGISTRY/NAME:TAG}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

root=$work/rootfs
mkdir -p "$root/bin" "$root/www" "$root/tmp" "$root/etc"
chmod 1777 "$root/tmp"
cp /bin/busybox "$root/bin/busybox"
for tool in sh httpd echo cat ls sleep; do ln -s busybox "$root/bin/$tool"; done
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
cat > "$root/www/index.html" <<HTML
<!doctype html><title>berth</title><h1>Hello from a berth pod</h1>
HTML

layout=$work/layout
mkdir -p "$layout/blobs/sha256"
blob() { local d; d=$(sha256sum "$1" | cut -d' ' -f1); mv "$1" "$layout/blobs/sha256/$d"; echo "$d"; }
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n "$work/layer.tar"
layer_size=$(stat -c %s "$work/layer.tar.gz")
layer=$(blob "$work/layer.tar.gz")
cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/httpd","-f","-v","-p","8080","-h","/www"],"ExposedPorts":{"8080/tcp":{}},"Env":["PATH=/bin"]},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
JSON
config_size=$(stat -c %s "$work/config.json")
config=$(blob "$work/config.json")
cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer","size":$layer_size}]}
JSON
manifest_size=$(stat -c %s "$work/manifest.json")
manifest=$(blob "$work/manifest.json")
echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
cat > "$layout/index.json" <<JSON
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}
JSON
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$ref"
