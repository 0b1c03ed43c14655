//! The HTTP API client the CLI uses: gateway and token from BERTH_GATEWAY/BERTH_TOKEN, else
//! the client profile the server wrote.

use anyhow::{anyhow, bail, Context, Result};
use berth_api::{default_profile_path, ClientProfile};
use berth_api::{
    ApiError, BuildEvent, Container, ContainerList, CreateContainerRequest, Deployment,
    DeploymentList, ExecEvent, ExecRequest, FileWritten, ImageList, ImageSpec, PruneResult,
    PutSecret, Secret, SecretList, StopRequest, Volume, VolumeList,
};
use futures_util::StreamExt;

pub struct Client {
    http: reqwest::Client,
    gateway: String,
    token: String,
}

impl Client {
    pub fn from_env() -> Result<Self> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let profile_path = default_profile_path();
        let profile = ClientProfile::load(&profile_path);
        let gateway = env("BERTH_GATEWAY")
            .or_else(|| profile.as_ref().map(|p| p.gateway.clone()))
            .ok_or_else(|| {
                anyhow!(
                    "no berth server configured: set BERTH_GATEWAY and BERTH_TOKEN, or start `berth server` on this machine (it writes {})",
                    profile_path.display()
                )
            })?;
        // berth's local CA, when the server uses one: the CLI trusts it with no setup.
        let ca_cert =
            env("BERTH_CA_CERT").or_else(|| profile.as_ref().and_then(|p| p.ca_cert.clone()));
        let token = env("BERTH_TOKEN")
            .or_else(|| profile.map(|p| p.token))
            .ok_or_else(|| anyhow!("no API token: set BERTH_TOKEN"))?;
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("berth-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            if let Ok(pem) = std::fs::read(&path) {
                let cert = reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("reading berth's CA certificate {path}"))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Client {
            http,
            gateway: gateway.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let req = req.bearer_auth(&self.token);
        let started = std::time::Instant::now();
        // A streamed body cannot be sent twice: such a request is not retried.
        let Some(first) = req.try_clone() else {
            return checked(self.send_once(req).await?).await;
        };
        let mut resp = self.send_once(first).await?;
        // A server with full queues refused without recording anything: asking again is
        // safe, for creates too.
        while resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
            && started.elapsed() < BUSY_RETRY_LIMIT
        {
            tokio::time::sleep(retry_after(&resp)).await;
            let Some(again) = req.try_clone() else { break };
            resp = self.send_once(again).await?;
        }
        checked(resp).await
    }

    async fn send_once(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        req.send()
            .await
            .with_context(|| format!("cannot reach the berth server at {}", self.gateway))
    }

    pub async fn create(&self, req: &CreateContainerRequest) -> Result<Container> {
        Ok(self
            .send(self.http.post(self.url("/v1/containers")).json(req))
            .await?
            .json()
            .await?)
    }

    pub async fn create_pod_token(
        &self,
        id: &str,
        req: &berth_api::CreatePodTokenRequest,
    ) -> Result<berth_api::PodToken> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/v1/containers/{id}/tokens")))
                    .json(req),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn revoke_pod_token(&self, id: &str, token_id: &str) -> Result<()> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/containers/{id}/tokens/{token_id}"))),
        )
        .await?;
        Ok(())
    }

    pub async fn get(&self, id: &str) -> Result<Container> {
        Ok(self
            .send(self.http.get(self.url(&format!("/v1/containers/{id}"))))
            .await?
            .json()
            .await?)
    }

    pub async fn list(&self, all: bool) -> Result<Vec<Container>> {
        let list: ContainerList = self
            .send(
                self.http
                    .get(self.url("/v1/containers"))
                    .query(&[("all", all)]),
            )
            .await?
            .json()
            .await?;
        Ok(list.containers)
    }

    pub async fn stop(&self, id: &str, grace_seconds: Option<u64>) -> Result<Container> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/v1/containers/{id}/stop")))
                    .json(&StopRequest { grace_seconds }),
            )
            .await?
            .json()
            .await?)
    }

    /// Builds `spec`, handing each log line to `on_log`; returns the built image's name.
    pub async fn build(
        &self,
        spec: &ImageSpec,
        push: Option<&str>,
        on_log: &mut dyn FnMut(&str),
    ) -> Result<String> {
        let mut req = self.http.post(self.url("/v1/images/build")).json(spec);
        if let Some(target) = push {
            req = req.query(&[("push", target)]);
        }
        let resp = self.send(req).await?;
        let mut stream = resp.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk.context("reading the build log")?);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                match serde_json::from_slice::<BuildEvent>(&line)
                    .context("the server sent an unreadable build event")?
                {
                    BuildEvent::Log(text) => on_log(&text),
                    BuildEvent::Done { image, .. } => return Ok(image),
                    BuildEvent::Error(message) => bail!("the build failed: {message}"),
                }
            }
        }
        bail!("the build log ended without a result")
    }

    /// Runs `req` in container `id`, handing each output event to `on_event`; returns the
    /// command's exit code.
    pub async fn exec(
        &self,
        id: &str,
        req: &ExecRequest,
        on_event: &mut dyn FnMut(&ExecEvent),
    ) -> Result<i32> {
        let resp = self
            .send(
                self.http
                    .post(self.url(&format!("/v1/containers/{id}/exec")))
                    .json(req),
            )
            .await?;
        let mut stream = resp.bytes_stream();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk.context("reading the command's output")?);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let event: ExecEvent = serde_json::from_slice(&line)
                    .context("the server sent an unreadable exec event")?;
                match &event {
                    ExecEvent::Exit(code) => return Ok(*code),
                    ExecEvent::Error(message) => bail!("{message}"),
                    _ => on_event(&event),
                }
            }
        }
        bail!("the command's output ended without its exit code")
    }

    /// Starts `req` in container `id` on a terminal of `size`, over a websocket.
    pub async fn exec_tty(
        &self,
        id: &str,
        req: &ExecRequest,
        size: berth_api::TtySize,
    ) -> Result<TtySession> {
        let mut query: Vec<(&str, String)> =
            req.command.iter().map(|a| ("command", a.clone())).collect();
        query.extend(req.env.iter().map(|(k, v)| ("env", format!("{k}={v}"))));
        if let Some(dir) = &req.workdir {
            query.push(("workdir", dir.clone()));
        }
        if let Some(t) = req.timeout_seconds {
            query.push(("timeout_seconds", t.to_string()));
        }
        query.push(("rows", size.rows.to_string()));
        query.push(("cols", size.cols.to_string()));
        let resp = self
            .http
            .get(self.url(&format!("/v1/containers/{id}/exec/tty")))
            .query(&query)
            .version(reqwest::Version::HTTP_11)
            .header(reqwest::header::CONNECTION, "upgrade")
            .header(reqwest::header::UPGRADE, "websocket")
            .header(reqwest::header::SEC_WEBSOCKET_VERSION, "13")
            .header(
                reqwest::header::SEC_WEBSOCKET_KEY,
                tokio_tungstenite::tungstenite::handshake::client::generate_key(),
            )
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the berth server at {}", self.gateway))?;
        if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            match serde_json::from_str::<ApiError>(&text) {
                Ok(err) => bail!("{}", err.error.message),
                Err(_) => bail!("the server answered {status}: {text}"),
            }
        }
        let upgraded = resp
            .upgrade()
            .await
            .context("switching to the terminal's websocket")?;
        let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
            upgraded,
            tokio_tungstenite::tungstenite::protocol::Role::Client,
            None,
        )
        .await;
        Ok(TtySession { socket })
    }

    /// The response carrying the bytes of the file at `path` in container `id`.
    pub async fn download(&self, id: &str, path: &str) -> Result<reqwest::Response> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/containers/{id}/files")))
                .query(&[("path", path)]),
        )
        .await
    }

    /// Writes `body` to `path` in container `id`, with permission bits `mode` (octal).
    pub async fn upload(
        &self,
        id: &str,
        path: &str,
        mode: u32,
        body: reqwest::Body,
    ) -> Result<FileWritten> {
        Ok(self
            .send(
                self.http
                    .put(self.url(&format!("/v1/containers/{id}/files")))
                    .query(&[("path", path), ("mode", &format!("{mode:o}"))])
                    .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                    .body(body),
            )
            .await?
            .json()
            .await?)
    }

    /// The entries of the directory at `path` in container `id`.
    pub async fn list_files(&self, id: &str, path: &str) -> Result<berth_api::FileListing> {
        Ok(self
            .send(
                self.http
                    .get(self.url(&format!("/v1/containers/{id}/files/list")))
                    .query(&[("path", path)]),
            )
            .await?
            .json()
            .await?)
    }

    /// Makes the directory `path` in container `id` (fine if it is there already).
    pub async fn make_dir(&self, id: &str, path: &str, mode: u32) -> Result<()> {
        self.send(
            self.http
                .post(self.url(&format!("/v1/containers/{id}/files/mkdir")))
                .query(&[("path", path), ("mode", &format!("{mode:o}"))]),
        )
        .await?;
        Ok(())
    }

    /// Uploads an archive to `/v1/code/{digest}` unless the server has it; returns whether
    /// it was sent.
    pub async fn put_code(&self, digest: &str, archive: Vec<u8>) -> Result<bool> {
        let url = self.url(&format!("/v1/code/{digest}"));
        let head = self
            .http
            .head(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the berth server at {}", self.gateway))?;
        if head.status().is_success() {
            return Ok(false);
        }
        self.send(
            self.http
                .put(&url)
                .header("content-type", "application/gzip")
                .body(archive),
        )
        .await?;
        Ok(true)
    }

    pub async fn images(&self) -> Result<ImageList> {
        Ok(self
            .send(self.http.get(self.url("/v1/images")))
            .await?
            .json()
            .await?)
    }

    pub async fn prune_images(&self) -> Result<PruneResult> {
        Ok(self
            .send(self.http.post(self.url("/v1/images/prune")))
            .await?
            .json()
            .await?)
    }

    pub async fn logs(&self, id: &str, follow: bool) -> Result<reqwest::Response> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/containers/{id}/logs")))
                .query(&[("follow", follow)]),
        )
        .await
    }

    pub async fn deployments(&self) -> Result<Vec<Deployment>> {
        let list: DeploymentList = self
            .send(self.http.get(self.url("/v1/deployments")))
            .await?
            .json()
            .await?;
        Ok(list.deployments)
    }

    pub async fn stop_deployment(&self, name: &str) -> Result<Deployment> {
        Ok(self
            .send(
                self.http
                    .post(self.url(&format!("/v1/deployments/{name}/stop"))),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        self.send(
            self.http
                .delete(self.url(&format!("/v1/deployments/{name}"))),
        )
        .await?;
        Ok(())
    }

    pub async fn deployment_logs(&self, name: &str, follow: bool) -> Result<reqwest::Response> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/deployments/{name}/logs")))
                .query(&[("follow", follow)]),
        )
        .await
    }

    pub async fn create_join_token(&self, ttl_seconds: u64) -> Result<berth_api::JoinTokenCreated> {
        Ok(self
            .send(self.http.post(self.url("/v1/nodes/join-tokens")).json(
                &berth_api::CreateJoinTokenRequest {
                    ttl_seconds: Some(ttl_seconds),
                },
            ))
            .await?
            .json()
            .await?)
    }

    pub async fn delete_node(&self, id: &str) -> Result<()> {
        self.send(self.http.delete(self.url(&format!("/v1/nodes/{id}"))))
            .await?;
        Ok(())
    }

    pub async fn nodes(&self) -> Result<Vec<berth_api::NodeInfo>> {
        let list: berth_api::NodeList = self
            .send(self.http.get(self.url("/v1/nodes")))
            .await?
            .json()
            .await?;
        Ok(list.nodes)
    }

    pub async fn volumes(&self) -> Result<Vec<Volume>> {
        let list: VolumeList = self
            .send(self.http.get(self.url("/v1/volumes")))
            .await?
            .json()
            .await?;
        Ok(list.volumes)
    }

    pub async fn delete_volume(&self, name: &str) -> Result<()> {
        self.send(self.http.delete(self.url(&format!("/v1/volumes/{name}"))))
            .await?;
        Ok(())
    }

    pub async fn put_secret(&self, name: &str, value: &str) -> Result<Secret> {
        Ok(self
            .send(
                self.http
                    .put(self.url(&format!("/v1/secrets/{name}")))
                    .json(&PutSecret {
                        value: value.to_string(),
                    }),
            )
            .await?
            .json()
            .await?)
    }

    pub async fn secrets(&self) -> Result<Vec<Secret>> {
        let list: SecretList = self
            .send(self.http.get(self.url("/v1/secrets")))
            .await?
            .json()
            .await?;
        Ok(list.secrets)
    }

    pub async fn delete_secret(&self, name: &str) -> Result<()> {
        self.send(self.http.delete(self.url(&format!("/v1/secrets/{name}"))))
            .await?;
        Ok(())
    }
}

/// What a terminal session brings: output, or the command's end.
pub enum TtyEvent {
    Output(bytes::Bytes),
    Ended(ExecEvent),
}

/// A command running on a terminal in a pod.
pub struct TtySession {
    socket: tokio_tungstenite::WebSocketStream<reqwest::Upgraded>,
}

impl TtySession {
    pub async fn next(&mut self) -> Result<TtyEvent> {
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let message = self
                .socket
                .next()
                .await
                .ok_or_else(|| {
                    anyhow!("the server closed the terminal without the command's exit code")
                })?
                .context("reading the terminal")?;
            match message {
                Message::Binary(bytes) => return Ok(TtyEvent::Output(bytes)),
                Message::Text(text) => {
                    let event: ExecEvent = serde_json::from_str(&text)
                        .context("the server sent an unreadable end of the command")?;
                    return Ok(TtyEvent::Ended(event));
                }
                Message::Close(_) => {
                    bail!("the server closed the terminal without the command's exit code")
                }
                _ => continue,
            }
        }
    }

    pub async fn send_keys(&mut self, keys: &[u8]) -> Result<()> {
        use futures_util::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Binary(
                bytes::Bytes::copy_from_slice(keys),
            ))
            .await
            .context("sending to the terminal")
    }

    pub async fn resize(&mut self, size: berth_api::TtySize) -> Result<()> {
        use futures_util::SinkExt;
        let control = serde_json::to_string(&berth_api::TtyControl::Resize(size))?;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                control.into(),
            ))
            .await
            .context("resizing the terminal")
    }
}

/// How long a client keeps asking a busy server (429) before it reports the refusal.
const BUSY_RETRY_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The server's `Retry-After` in seconds (1 to 10), 1 when it gives none.
fn retry_after(resp: &reqwest::Response) -> std::time::Duration {
    let seconds = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .clamp(1, 10);
    std::time::Duration::from_secs(seconds)
}

/// The response if it succeeded, else the server's error message.
async fn checked(resp: reqwest::Response) -> Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ApiError>(&text) {
        Ok(err) => bail!("{}", err.error.message),
        Err(_) => bail!("the server answered {status}: {text}"),
    }
}
