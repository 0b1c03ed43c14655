//! A real OCI registry (`docker-registry` from Debian) on 127.0.0.1, and pushing images to it
//! over the Distribution API.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::StatusCode;

use super::images::{Blob, Image, ImageIndex, MEDIA_CONFIG};
use super::{free_port, loopback, poll, tail_file, Context, Res};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct Registry {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Mutex<Option<Child>>,
    http: Client,
}

impl Registry {
    /// Starts `docker-registry serve` with its storage and config under `dir`, and waits until
    /// `GET /v2/` answers.
    pub fn start(dir: &Path) -> Res<Registry> {
        std::fs::create_dir_all(dir.join("storage")).ctx("create registry storage dir")?;
        Registry::serve(dir, &dir.join("storage"), loopback(free_port()?))
    }

    /// A second registry process serving this one's images at `ip` (an address of the
    /// host that another namespace reaches), its config and log under `dir`.
    pub fn mirror_on(&self, dir: &Path, ip: std::net::IpAddr) -> Res<Registry> {
        let storage = self
            .log
            .parent()
            .ok_or("the registry log has no directory")?
            .join("storage");
        std::fs::create_dir_all(dir).ctx("create mirror dir")?;
        Registry::serve(dir, &storage, SocketAddr::new(ip, free_port()?))
    }

    fn serve(dir: &Path, storage: &Path, addr: SocketAddr) -> Res<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            return Err(format!(
                "{REGISTRY_BIN} is missing: install the Debian package docker-registry"
            ));
        }
        let config = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            storage.display()
        );
        std::fs::write(&config, yaml).ctx("write registry config")?;
        let log = dir.join("registry.log");
        let out = File::create(&log).ctx("create registry log")?;
        let err = out.try_clone().ctx("clone registry log handle")?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .ctx("start docker-registry")?;
        let http = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .ctx("build registry http client")?;
        let registry = Registry {
            addr,
            log,
            child: Mutex::new(Some(child)),
            http,
        };

        let ready = poll(Duration::from_secs(30), Duration::from_millis(100), || {
            if let Some(status) = registry.exit_status() {
                return Some(Err(format!("docker-registry exited early ({status})")));
            }
            let resp = registry
                .http
                .get(format!("http://{addr}/v2/"))
                .send()
                .ok()?;
            (resp.status() == StatusCode::OK).then_some(Ok(()))
        });
        let outcome = ready
            .unwrap_or_else(|| Err("docker-registry did not answer GET /v2/ within 30s".into()));
        outcome.map_err(|e| format!("{e}; its log:\n{}", tail_file(&registry.log, 30)))?;
        Ok(registry)
    }

    fn exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// `host:port` as used in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Pushes every blob of `image` (skipping those present) and its manifest as `name:tag`.
    /// Returns the manifest digest.
    pub fn push(&self, name: &str, tag: &str, image: &Image) -> Res<String> {
        for blob in image.layers.iter().chain(std::iter::once(&image.config)) {
            self.push_blob(name, blob)
                .with_ctx(|| format!("push {name}:{tag}"))?;
        }
        self.push_manifest(name, tag, &image.manifest)
    }

    /// Pushes every image of `index` by digest (untagged), then the index itself as
    /// `name:tag`. Returns the index digest.
    pub fn push_index(&self, name: &str, tag: &str, index: &ImageIndex) -> Res<String> {
        for image in &index.images {
            let digest = image.manifest.digest.clone();
            self.push(name, &digest, image)
                .with_ctx(|| format!("push a manifest of the index {name}:{tag}"))?;
        }
        self.push_manifest(name, tag, &index.manifest)
    }

    fn push_blob(&self, name: &str, blob: &Blob) -> Res<()> {
        let base = format!("http://{}", self.addr);
        let head = self
            .http
            .head(format!("{base}/v2/{name}/blobs/{}", blob.digest))
            .send()
            .ctx("HEAD blob")?;
        if head.status() == StatusCode::OK {
            return Ok(());
        }
        let start = self
            .http
            .post(format!("{base}/v2/{name}/blobs/uploads/"))
            .send()
            .ctx("start blob upload")?;
        if start.status() != StatusCode::ACCEPTED {
            return Err(format!(
                "POST /v2/{name}/blobs/uploads/ answered {}: {}",
                start.status(),
                start.text().unwrap_or_default()
            ));
        }
        let location = start
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or("blob upload answer has no Location header")?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{location}{sep}digest={}", blob.digest))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(blob.data.clone())
            .send()
            .ctx("upload blob")?;
        if put.status() != StatusCode::CREATED {
            return Err(format!(
                "PUT blob {} answered {}: {}",
                blob.digest,
                put.status(),
                put.text().unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// PUTs `manifest` (an image manifest or an index) as `name:tag`; `tag` may be its digest.
    fn push_manifest(&self, name: &str, tag: &str, manifest: &Blob) -> Res<String> {
        let url = format!("http://{}/v2/{name}/manifests/{tag}", self.addr);
        let put = self
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, manifest.media_type)
            .body(manifest.data.clone())
            .send()
            .with_ctx(|| format!("PUT manifest {name}:{tag}"))?;
        if put.status() != StatusCode::CREATED {
            return Err(format!(
                "PUT manifest {name}:{tag} answered {}: {}",
                put.status(),
                put.text().unwrap_or_default()
            ));
        }
        let digest = put
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(&manifest.digest)
            .to_string();
        if digest != manifest.digest {
            return Err(format!(
                "registry computed manifest digest {digest} for {name}:{tag}, expected {}",
                manifest.digest
            ));
        }
        Ok(digest)
    }

    /// Deletes the manifest `digest` of `name`, and so every tag pointing at it: pulls of it
    /// fail from then on, while the rest of the registry serves on.
    pub fn delete_manifest(&self, name: &str, digest: &str) -> Res<()> {
        let url = format!("http://{}/v2/{name}/manifests/{digest}", self.addr);
        let resp = self
            .http
            .delete(&url)
            .send()
            .with_ctx(|| format!("DELETE {url}"))?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(format!(
                "DELETE {url} answered {}: {}",
                resp.status(),
                resp.text().unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Gives the image `name:tag` (an OCI image, as `berth image build --push` writes it) a
    /// command and exposed ports, as a Dockerfile's CMD and EXPOSE would, re-pushing its
    /// config and manifest.
    pub fn set_command(&self, name: &str, tag: &str, cmd: &[&str], ports: &[u16]) -> Res<()> {
        let base = format!("http://{}/v2/{name}", self.addr);
        let get_json = |url: String| -> Res<serde_json::Value> {
            let resp = self
                .http
                .get(&url)
                .header(reqwest::header::ACCEPT, MEDIA_MANIFEST)
                .send()
                .with_ctx(|| format!("GET {url}"))?;
            if !resp.status().is_success() {
                return Err(format!("GET {url} answered {}", resp.status()));
            }
            resp.json().with_ctx(|| format!("GET {url}: JSON"))
        };
        let mut manifest = get_json(format!("{base}/manifests/{tag}"))?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or("the manifest has no config digest")?
            .to_string();
        let mut config = get_json(format!("{base}/blobs/{config_digest}"))?;
        config["config"]["Cmd"] = serde_json::json!(cmd);
        config["config"]["ExposedPorts"] = ports
            .iter()
            .map(|p| (format!("{p}/tcp"), serde_json::json!({})))
            .collect::<serde_json::Map<_, _>>()
            .into();
        let config_blob = Blob::new(
            MEDIA_CONFIG,
            serde_json::to_vec(&config).ctx("config JSON")?,
        );
        self.push_blob(name, &config_blob)?;
        manifest["config"]["digest"] = config_blob.digest.clone().into();
        manifest["config"]["size"] = config_blob.data.len().into();
        let manifest_blob = Blob::new(
            MEDIA_MANIFEST,
            serde_json::to_vec(&manifest).ctx("manifest JSON")?,
        );
        self.push_manifest(name, tag, &manifest_blob)?;
        Ok(())
    }

    /// The status a pull's first request, `GET` of the manifest `name:reference`, gets.
    pub fn manifest_status(&self, name: &str, reference: &str) -> Res<StatusCode> {
        let url = format!("http://{}/v2/{name}/manifests/{reference}", self.addr);
        let resp = self
            .http
            .get(&url)
            .header(
                reqwest::header::ACCEPT,
                format!("{MEDIA_MANIFEST}, {MEDIA_INDEX}"),
            )
            .send()
            .with_ctx(|| format!("GET {url}"))?;
        Ok(resp.status())
    }

    /// Stops the registry process (SIGTERM, then SIGKILL).
    pub fn stop(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(child) = guard.take() {
            super::server::terminate(child, Duration::from_secs(10));
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
