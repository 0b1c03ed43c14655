//! The parts of an image config that decide how a container runs.

use serde::{Deserialize, Serialize};

/// What a container inherits from its image (the `config` object of the OCI image config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Ports from EXPOSE (tcp only), ascending.
    pub exposed_ports: Vec<u16>,
    /// STOPSIGNAL as the image names it (`SIGINT`, `2`), unchecked. Absent from images
    /// recorded before it was read.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(default)]
    config: Option<RawConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    exposed_ports: Option<std::collections::BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    stop_signal: Option<String>,
}

impl ImageConfig {
    /// Reads an OCI (or Docker schema 2) image config document.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let raw: RawImage = serde_json::from_str(text)?;
        let c = raw.config.unwrap_or_default();
        let mut exposed_ports: Vec<u16> = c
            .exposed_ports
            .unwrap_or_default()
            .keys()
            .filter_map(|k| {
                let (port, proto) = k.split_once('/').unwrap_or((k.as_str(), "tcp"));
                (proto == "tcp").then(|| port.parse().ok()).flatten()
            })
            .collect();
        exposed_ports.sort_unstable();
        exposed_ports.dedup();
        Ok(ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
            exposed_ports,
            stop_signal: c.stop_signal.filter(|s| !s.trim().is_empty()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_style_config() {
        let cfg = ImageConfig::from_json(
            r#"{"architecture":"amd64","config":{"Entrypoint":["tini","--"],"Cmd":["start.sh"],
            "Env":["PATH=/bin"],"WorkingDir":"/home/jovyan","User":"1000",
            "ExposedPorts":{"8888/tcp":{},"53/udp":{},"80":{}},"StopSignal":"SIGINT"}}"#,
        )
        .expect("parses");
        assert_eq!(cfg.entrypoint, ["tini", "--"]);
        assert_eq!(cfg.cmd, ["start.sh"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/home/jovyan"));
        assert_eq!(cfg.user.as_deref(), Some("1000"));
        assert_eq!(cfg.exposed_ports, [80, 8888]);
        assert_eq!(cfg.stop_signal.as_deref(), Some("SIGINT"));
    }

    #[test]
    fn missing_config_is_empty() {
        let cfg = ImageConfig::from_json(r#"{"architecture":"amd64"}"#).expect("parses");
        assert_eq!(cfg, ImageConfig::default());
    }
}
