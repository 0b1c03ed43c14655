//! Test images, built here as OCI layers (gzip or zstd tarballs), configs, manifests and
//! indexes.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::registry::{Registry, MEDIA_INDEX, MEDIA_MANIFEST};
use super::{command_output, random_hex, Context, Res};

pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Where the testapp binary lives inside its images.
pub const TESTAPP_PATH: &str = "/usr/local/bin/testapp";
const BUSYBOX_HOST_PATH: &str = "/bin/busybox";
const BUSYBOX_INDEX: &str = "hello from busybox httpd";
/// What the testapp answers in each image of the multi-arch index, and in the zstd image.
pub const MULTIARCH_AMD64_TEXT: &str = "hello from the amd64 image of the index";
pub const MULTIARCH_ARM64_TEXT: &str = "hello from the arm64 image of the index";
pub const ZSTD_TEXT: &str = "hello from an image with a zstd layer";
/// The user and working directory of the `user_workdir` image (uid 1000 in its /etc/passwd).
pub const IMAGE_USER: &str = "app";
pub const IMAGE_USER_UID: u32 = 1000;
pub const IMAGE_WORKDIR: &str = "/tmp";
/// A fixed mtime keeps layers reproducible.
const MTIME: u64 = 1_700_000_000;

/// Content-addressed bytes.
#[derive(Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&data),
            data,
        }
    }

    fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A compressed layer and the digest of its uncompressed tar (the config's diff_id).
#[derive(Clone)]
pub struct Layer {
    pub blob: Blob,
    pub diff_id: String,
}

impl Layer {
    /// A `tar+gzip` layer of `tar`.
    pub fn gzip(tar: &[u8]) -> Res<Layer> {
        // Fast compression: flate2 is unoptimised in the test profile.
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(tar).ctx("gzip layer")?;
        let data = gz.finish().ctx("gzip layer")?;
        Ok(Layer {
            blob: Blob::new(MEDIA_LAYER, data),
            diff_id: sha256_digest(tar),
        })
    }

    /// A `tar+zstd` layer of `tar`.
    pub fn zstd(tar: &[u8]) -> Res<Layer> {
        let data = zstd::bulk::compress(tar, 1).ctx("zstd layer")?;
        Ok(Layer {
            blob: Blob::new(MEDIA_LAYER_ZSTD, data),
            diff_id: sha256_digest(tar),
        })
    }
}

/// Builds one layer tarball. Paths are absolute image paths ("/usr/bin/x"); parent directories
/// get their own entries.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
    dirs: BTreeSet<String>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
            dirs: BTreeSet::new(),
        }
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    fn relative(path: &str) -> Res<&str> {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Err(format!("image path {path:?} has no name"));
        }
        Ok(rel)
    }

    fn ensure_parents(&mut self, rel: &str) -> Res<()> {
        let mut parent = String::new();
        let components: Vec<&str> = rel.split('/').collect();
        for component in &components[..components.len() - 1] {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(component);
            if !self.dirs.contains(&parent) {
                let p = format!("/{parent}");
                self.dir(&p, 0o755)?;
            }
        }
        Ok(())
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> Res<&mut Self> {
        let rel = Self::relative(path)?.trim_end_matches('/').to_string();
        self.ensure_parents(&rel)?;
        if self.dirs.insert(rel.clone()) {
            let mut h = Self::header(tar::EntryType::Directory, mode, 0);
            h.set_path(format!("{rel}/"))
                .with_ctx(|| format!("tar path {path}"))?;
            h.set_cksum();
            self.tar
                .append(&h, std::io::empty())
                .with_ctx(|| format!("tar dir {path}"))?;
        }
        Ok(self)
    }

    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Res<&mut Self> {
        let rel = Self::relative(path)?;
        self.ensure_parents(rel)?;
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_path(rel).with_ctx(|| format!("tar path {path}"))?;
        h.set_cksum();
        self.tar
            .append(&h, data)
            .with_ctx(|| format!("tar file {path}"))?;
        Ok(self)
    }

    /// A symlink at `path` whose target is stored verbatim (may be absolute or climb with `..`).
    pub fn symlink(&mut self, path: &str, target: &str) -> Res<&mut Self> {
        self.link(tar::EntryType::Symlink, path, target)
    }

    /// A hard link at `path` to `target`, stored verbatim.
    pub fn hardlink(&mut self, path: &str, target: &str) -> Res<&mut Self> {
        self.link(tar::EntryType::Link, path, target)
    }

    fn link(&mut self, kind: tar::EntryType, path: &str, target: &str) -> Res<&mut Self> {
        let rel = Self::relative(path)?;
        self.ensure_parents(rel)?;
        let mut h = Self::header(kind, 0o777, 0);
        h.set_path(rel).with_ctx(|| format!("tar path {path}"))?;
        h.set_link_name_literal(target)
            .with_ctx(|| format!("tar link name {target}"))?;
        h.set_cksum();
        self.tar
            .append(&h, std::io::empty())
            .with_ctx(|| format!("tar link {path}"))?;
        Ok(self)
    }

    /// A regular file whose entry name is written into the header byte for byte, with no
    /// normalisation and no parent entries: `tar::Header::set_path` refuses `..`, which is the
    /// point of a hostile layer.
    pub fn raw_file(&mut self, name: &str, data: &[u8], mode: u32) -> Res<&mut Self> {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        let gnu = h.as_gnu_mut().ok_or("a new_gnu header is not GNU")?;
        if name.len() >= gnu.name.len() {
            return Err(format!("raw tar name {name:?} is too long"));
        }
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.tar
            .append(&h, data)
            .with_ctx(|| format!("tar raw entry {name}"))?;
        Ok(self)
    }

    /// Copies a host file (following symlinks) to the same absolute path in the layer.
    pub fn host_file(&mut self, host_path: &Path, mode: u32) -> Res<&mut Self> {
        let data = std::fs::read(host_path).with_ctx(|| format!("read {}", host_path.display()))?;
        let path = host_path
            .to_str()
            .ok_or_else(|| format!("non-UTF-8 path {host_path:?}"))?;
        self.file(path, &data, mode)
    }

    /// The uncompressed tarball.
    pub fn finish_tar(self) -> Res<Vec<u8>> {
        self.tar.into_inner().ctx("finish tar")
    }

    /// A gzip layer.
    pub fn finish(self) -> Res<Layer> {
        Layer::gzip(&self.finish_tar()?)
    }
}

/// An image ready to push: layers, config and manifest blobs.
pub struct Image {
    pub layers: Vec<Blob>,
    pub config: Blob,
    pub manifest: Blob,
}

impl Image {
    /// `runtime_config` is the config's `config` object (Entrypoint, Cmd, Env, ExposedPorts...).
    pub fn new(layers: &[&Layer], runtime_config: Value) -> Res<Image> {
        Image::for_arch(layers, runtime_config, oci_arch())
    }

    /// An image whose config claims the OCI architecture `arch` ("amd64", "arm64"...).
    pub fn for_arch(layers: &[&Layer], runtime_config: Value, arch: &str) -> Res<Image> {
        let config = json!({
            "architecture": arch,
            "os": "linux",
            "created": "2023-11-14T22:13:20Z",
            "config": runtime_config,
            "rootfs": {
                "type": "layers",
                "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
            },
            "history": layers.iter().map(|_| json!({"created_by": "berth-e2e harness"})).collect::<Vec<_>>(),
        });
        let config = Blob::new(
            MEDIA_CONFIG,
            serde_json::to_vec(&config).ctx("serialize image config")?,
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(|l| l.blob.descriptor()).collect::<Vec<_>>(),
        });
        let manifest = Blob::new(
            MEDIA_MANIFEST,
            serde_json::to_vec(&manifest).ctx("serialize manifest")?,
        );
        Ok(Image {
            layers: layers.iter().map(|l| l.blob.clone()).collect(),
            config,
            manifest,
        })
    }
}

/// An OCI image index (a multi-platform image) over images built here.
pub struct ImageIndex {
    pub images: Vec<Image>,
    pub manifest: Blob,
}

impl ImageIndex {
    /// `entries` are (image, architecture), listed in that order, all for os linux.
    pub fn new(entries: Vec<(Image, &str)>) -> Res<ImageIndex> {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(image, arch)| {
                let mut descriptor = image.manifest.descriptor();
                descriptor["platform"] = json!({"architecture": arch, "os": "linux"});
                descriptor
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": manifests,
        });
        let manifest = Blob::new(
            MEDIA_INDEX,
            serde_json::to_vec(&index).ctx("serialize image index")?,
        );
        Ok(ImageIndex {
            images: entries.into_iter().map(|(image, _)| image).collect(),
            manifest,
        })
    }
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The shared libraries `ldd` reports for `binary`, including the dynamic loader.
pub fn shared_libraries(binary: &Path) -> Res<Vec<PathBuf>> {
    let bin = binary
        .to_str()
        .ok_or_else(|| format!("non-UTF-8 path {binary:?}"))?;
    let out = command_output("ldd", &[bin])?;
    let mut libs = Vec::new();
    for line in out.lines() {
        let line = line.trim();
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let candidate = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = candidate.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(path));
        } else if line.contains("not found") {
            return Err(format!("ldd {bin}: {line}"));
        }
    }
    if libs.is_empty() && !out.contains("statically linked") {
        return Err(format!("ldd {bin} listed no libraries:\n{out}"));
    }
    Ok(libs)
}

/// The image references the tests use, and the host paths hostile images try to reach.
pub struct TestImages {
    /// `127.0.0.1:PORT/testapp:latest`.
    pub testapp: String,
    /// The same image under a tag only the validation test uses, so it can tell whether a
    /// rejected request left a container behind.
    pub testapp_validation: String,
    pub busybox: String,
    /// `busybox`: a Docker Hub short name, served by the registry as its docker.io mirror.
    pub hub_busybox: String,
    pub nocmd: String,
    /// An OCI index listing an arm64 image (answering `MULTIARCH_ARM64_TEXT`) before the
    /// amd64 one (answering `MULTIARCH_AMD64_TEXT`). Both hold the host's testapp binary, so
    /// either would run: only the answer tells which one the server picked.
    pub multiarch: String,
    /// The testapp in a `tar+zstd` layer, answering `ZSTD_TEXT`.
    pub zstd: String,
    /// The testapp with USER `IMAGE_USER` and WORKDIR `IMAGE_WORKDIR` in its config.
    pub user_workdir: String,
    /// Busybox with `STOPSIGNAL SIGINT` whose entrypoint (`STOP_SIGNAL_SCRIPT`) exits
    /// `EXIT_ON_SIGINT` on SIGINT and `EXIT_ON_SIGTERM` on SIGTERM.
    pub stop_signal: String,
    pub hostile: Vec<HostileImage>,
}

/// What the `stop_signal` image's entrypoint exits with on each signal.
pub const EXIT_ON_SIGINT: i32 = 42;
pub const EXIT_ON_SIGTERM: i32 = 43;

/// The `stop_signal` image's entrypoint: it says which signal it got through its exit code.
const STOP_SIGNAL_SCRIPT: &str = "trap 'echo got SIGINT; exit 42' INT; \
    trap 'echo got SIGTERM; exit 43' TERM; echo waiting for a signal; \
    while :; do sleep 0.2; done";

/// A layer that tries to write outside the rootfs, and where the write would land on the host.
pub struct HostileImage {
    pub reference: String,
    pub what: &'static str,
    /// Host paths that must not exist after the image was pulled and run.
    pub must_not_exist: Vec<PathBuf>,
    /// Host files that must keep a link count of 1 (a hard link to them would be an escape).
    pub must_stay_unlinked: Vec<PathBuf>,
}

fn testapp_config() -> Value {
    json!({
        "Entrypoint": [TESTAPP_PATH],
        "Cmd": ["http", "8080"],
        "ExposedPorts": {"8080/tcp": {}},
        "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
    })
}

/// The testapp config with its http mode answering `text`.
fn testapp_config_text(text: &str) -> Value {
    let mut config = testapp_config();
    config["Cmd"] = json!(["http", "8080", "--text", text]);
    config
}

/// The uncompressed testapp layer: the binary, its libraries, /tmp and users root and app.
fn testapp_tar(testapp: &Path) -> Res<Vec<u8>> {
    let mut layer = LayerBuilder::new();
    let binary = std::fs::read(testapp).with_ctx(|| format!("read {}", testapp.display()))?;
    layer.file(TESTAPP_PATH, &binary, 0o755)?;
    for lib in shared_libraries(testapp)? {
        layer.host_file(&lib, 0o755)?;
    }
    layer.dir("/tmp", 0o1777)?;
    layer.file(
        "/etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
        0o644,
    )?;
    layer.file("/etc/group", b"root:x:0:\napp:x:1000:\n", 0o644)?;
    layer.dir("/home/app", 0o755)?;
    layer.finish_tar()
}

fn busybox_layer() -> Res<Layer> {
    let mut layer = LayerBuilder::new();
    let host = Path::new(BUSYBOX_HOST_PATH);
    let busybox = std::fs::read(host)
        .with_ctx(|| format!("read {BUSYBOX_HOST_PATH} (Debian package busybox-static)"))?;
    layer.file("/bin/busybox", &busybox, 0o755)?;
    for applet in ["sh", "httpd", "echo", "cat", "sleep", "ls"] {
        layer.symlink(&format!("/bin/{applet}"), "busybox")?;
    }
    layer.file(
        "/www/index.html",
        format!("{BUSYBOX_INDEX}\n").as_bytes(),
        0o644,
    )?;
    layer.dir("/tmp", 0o1777)?;
    layer.file("/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)?;
    layer.finish()
}

pub fn busybox_index_text() -> &'static str {
    BUSYBOX_INDEX
}

/// The busybox httpd image with a second layer of its own whose `/www/index.html` says `text`:
/// an image no other test shares a layer with.
pub fn busybox_with_page(text: &str) -> Res<Image> {
    let base = busybox_layer()?;
    let mut page = LayerBuilder::new();
    page.file("/www/index.html", format!("{text}\n").as_bytes(), 0o644)?;
    let page = page.finish()?;
    Image::new(&[&base, &page], busybox_config())
}

fn busybox_config() -> Value {
    json!({
        "Cmd": ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"],
        "ExposedPorts": {"8080/tcp": {}},
        "Env": ["PATH=/bin"],
    })
}

/// Builds every test image and pushes it to `registry`.
pub fn build_and_push(registry: &Registry, testapp: &Path) -> Res<TestImages> {
    let host = registry.host();
    let reference = |name: &str| format!("{host}/{name}:latest");

    let app_tar = testapp_tar(testapp)?;
    let app_layer = Layer::gzip(&app_tar)?;
    let testapp_image = Image::new(&[&app_layer], testapp_config())?;
    registry.push("testapp", "latest", &testapp_image)?;
    registry.push("testapp", "validation", &testapp_image)?;

    let bb_layer = busybox_layer()?;
    let busybox_image = Image::new(&[&bb_layer], busybox_config())?;
    registry.push("busybox", "latest", &busybox_image)?;
    // Where `busybox` (docker.io/library/busybox:latest) lands through the mirror.
    registry.push("library/busybox", "latest", &busybox_image)?;
    let nocmd_image = Image::new(&[&bb_layer], json!({"Env": ["PATH=/bin"]}))?;
    registry.push("nocmd", "latest", &nocmd_image)?;

    let index = ImageIndex::new(vec![
        (
            Image::for_arch(
                &[&app_layer],
                testapp_config_text(MULTIARCH_ARM64_TEXT),
                "arm64",
            )?,
            "arm64",
        ),
        (
            Image::for_arch(
                &[&app_layer],
                testapp_config_text(MULTIARCH_AMD64_TEXT),
                "amd64",
            )?,
            "amd64",
        ),
    ])?;
    registry.push_index("multiarch", "latest", &index)?;

    let zstd_layer = Layer::zstd(&app_tar)?;
    let zstd_image = Image::new(&[&zstd_layer], testapp_config_text(ZSTD_TEXT))?;
    registry.push("zstd", "latest", &zstd_image)?;

    let mut user_config = testapp_config();
    user_config["User"] = json!(IMAGE_USER);
    user_config["WorkingDir"] = json!(IMAGE_WORKDIR);
    let user_image = Image::new(&[&app_layer], user_config)?;
    registry.push("user-workdir", "latest", &user_image)?;

    let stop_signal_image = Image::new(
        &[&bb_layer],
        json!({
            "Entrypoint": ["/bin/sh", "-c", STOP_SIGNAL_SCRIPT],
            "StopSignal": "SIGINT",
            "Env": ["PATH=/bin"],
        }),
    )?;
    registry.push("stop-signal", "latest", &stop_signal_image)?;

    let hostile = build_hostile(registry, &app_layer)?;

    Ok(TestImages {
        testapp: reference("testapp"),
        testapp_validation: format!("{host}/testapp:validation"),
        busybox: reference("busybox"),
        hub_busybox: "busybox".to_string(),
        nocmd: reference("nocmd"),
        multiarch: reference("multiarch"),
        zstd: reference("zstd"),
        user_workdir: reference("user-workdir"),
        stop_signal: reference("stop-signal"),
        hostile,
    })
}

/// `../` enough times to reach `/` from any unpack directory, then `path`.
fn climb(path: &Path) -> String {
    format!(
        "{}{}",
        "../".repeat(16),
        path.display().to_string().trim_start_matches('/')
    )
}

/// Hostile images: each has the testapp layer (so it could run) plus layers that try to write
/// outside the rootfs during unpacking.
fn build_hostile(registry: &Registry, app_layer: &Layer) -> Res<Vec<HostileImage>> {
    let host = registry.host();
    let tag = random_hex(6);
    let mut images = Vec::new();

    // 1. A plain `..` entry name.
    let escape = PathBuf::from(format!("/tmp/berth-escape-{tag}"));
    let mut layer = LayerBuilder::new();
    layer.raw_file(&climb(&escape), b"escaped via ..\n", 0o644)?;
    let evil = layer.finish()?;
    registry.push(
        "evil-dotdot",
        "latest",
        &Image::new(&[app_layer, &evil], testapp_config())?,
    )?;
    images.push(HostileImage {
        reference: format!("{host}/evil-dotdot:latest"),
        what: "a layer entry named ../../(...)/tmp/berth-escape-*",
        must_not_exist: vec![escape],
        must_stay_unlinked: vec![],
    });

    // 2. A symlink to the host's /etc, then a file written through it, in one layer.
    let pwned = format!("berth-pwned-{tag}");
    let mut layer = LayerBuilder::new();
    layer.symlink("/etc2", "/etc")?;
    layer.raw_file(
        &format!("etc2/{pwned}"),
        b"written through a symlink\n",
        0o644,
    )?;
    let evil = layer.finish()?;
    registry.push(
        "evil-symlink",
        "latest",
        &Image::new(&[app_layer, &evil], testapp_config())?,
    )?;
    images.push(HostileImage {
        reference: format!("{host}/evil-symlink:latest"),
        what: "a symlink etc2 -> /etc followed by a file etc2/berth-pwned-*",
        must_not_exist: vec![PathBuf::from(format!("/etc/{pwned}"))],
        must_stay_unlinked: vec![],
    });

    // 3. A relative symlink climbing to a host directory in one layer, a file through it in the
    //    next layer. The target directory exists on the host, so a naive unpacker would succeed.
    let target_dir = PathBuf::from(format!("/tmp/berth-symdir-{tag}"));
    std::fs::create_dir_all(&target_dir).with_ctx(|| format!("create {}", target_dir.display()))?;
    let mut link_layer = LayerBuilder::new();
    link_layer.symlink("/data", &climb(&target_dir))?;
    let link_layer = link_layer.finish()?;
    let mut file_layer = LayerBuilder::new();
    file_layer.raw_file(
        &format!("data/{pwned}"),
        b"written through a symlink\n",
        0o644,
    )?;
    let file_layer = file_layer.finish()?;
    registry.push(
        "evil-symlink-rel",
        "latest",
        &Image::new(&[app_layer, &link_layer, &file_layer], testapp_config())?,
    )?;
    images.push(HostileImage {
        reference: format!("{host}/evil-symlink-rel:latest"),
        what: "a symlink data -> ../../../(...)/tmp/berth-symdir-* in one layer, \
               a file data/berth-pwned-* in the next",
        must_not_exist: vec![target_dir.join(&pwned)],
        must_stay_unlinked: vec![],
    });

    // 4. A hard link to a host file. Linking would let the container write the host file.
    let victim = PathBuf::from(format!("/tmp/berth-hardlink-victim-{tag}"));
    std::fs::write(&victim, "host file, must not be linked into a rootfs\n")
        .with_ctx(|| format!("create {}", victim.display()))?;
    let mut layer = LayerBuilder::new();
    layer.hardlink("/stolen", &victim.display().to_string())?;
    layer.hardlink("/stolen2", &climb(&victim))?;
    let evil = layer.finish()?;
    registry.push(
        "evil-hardlink",
        "latest",
        &Image::new(&[app_layer, &evil], testapp_config())?,
    )?;
    images.push(HostileImage {
        reference: format!("{host}/evil-hardlink:latest"),
        what: "hard links to an absolute and a ../-climbing host path",
        must_not_exist: vec![],
        must_stay_unlinked: vec![victim],
    });

    Ok(images)
}

impl TestImages {
    /// Host files and directories the hostile images were built around (and any file an
    /// escape created, once its test has reported it), removed at teardown; files first.
    pub fn host_fixtures(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        let mut dirs = Vec::new();
        for image in &self.hostile {
            paths.extend(image.must_stay_unlinked.iter().cloned());
            for p in &image.must_not_exist {
                paths.push(p.clone());
                if let Some(dir) = p
                    .parent()
                    .filter(|d| d.to_string_lossy().starts_with("/tmp/berth-symdir-"))
                {
                    dirs.push(dir.to_path_buf());
                }
            }
        }
        paths.extend(dirs);
        paths
    }
}

/// Checks that the server's image store `store` holds no temporary files and no layer half
/// unpacked (finished layers are named by their digest's hex alone).
pub fn no_partial_files(store: &Path) -> Res<()> {
    let mut left = Vec::new();
    for dir in ["tmp", "layers"] {
        if let Ok(entries) = std::fs::read_dir(store.join(dir)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if dir == "tmp" || name.contains('.') {
                    left.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    Err(format!(
        "a failed pull left partial files in the image store:\n{}",
        super::indent(&left.join("\n"))
    ))
}
