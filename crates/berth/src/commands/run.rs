//! `berth run`: create a pod, follow its progress until it serves, print its URLs.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use berth_api::{ContainerStatus, CreateContainerRequest, ImageSource, VolumeMount};
use serde_json::Value;

use crate::cli::{Format, RunArgs};
use crate::client::Client;
use crate::commands::progress::Progress;

pub async fn run(args: RunArgs) -> Result<()> {
    if let Some(app) = &args.app {
        if !args.build.is_empty() || !args.ports.is_empty() || !args.env.is_empty() {
            bail!("{app} describes the pod itself; drop the other flags (or use the flags alone)");
        }
        return crate::commands::python::run_sdk(&["run", app]);
    }
    let client = Client::from_env()?;
    let mut req = request(&args)?;
    let text = args.format == Format::Text;
    let mut progress = Progress::new();
    if let ImageSource::Spec(spec) = &mut req.image {
        *spec = crate::commands::image::uploaded_spec(&args.build, &client).await?;
        // Build first, streaming the log; the create that follows is then a cache hit.
        client
            .build(spec, None, &mut |line| {
                if text {
                    progress.line(line)
                }
            })
            .await?;
    }
    let created = client.create(&req).await?;
    let id = created.id.clone();
    if text && matches!(req.image, ImageSource::Reference(_)) {
        progress.line(&format!("=> Pulling image {}", created.image));
    }
    let mut creating_said = false;
    let container = loop {
        let c = client.get(&id).await?;
        if text {
            if let Some(p) = c.progress.as_deref().filter(|p| p.contains("layers")) {
                progress.status(p);
            }
            // A fast start can pass STARTING between two polls; the line still belongs.
            let past_pull = !matches!(
                c.status,
                ContainerStatus::Pending | ContainerStatus::Pulling | ContainerStatus::Building
            );
            if past_pull && !creating_said && c.status != ContainerStatus::Failed {
                progress.line("=> Creating container");
                creating_said = true;
            }
        }
        if c.status == ContainerStatus::Running || c.status.is_terminal() {
            break c;
        }
        // Starts take a few hundred milliseconds: poll often so the URL prints promptly.
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    progress.finish();
    // A pod that ran and already ended (a short entrypoint, keep-warm 0) was created fine.
    let ran = container.started_at.is_some();
    if container.status != ContainerStatus::Running && !ran {
        let reason = container.reason.clone().unwrap_or_default();
        bail!("container {id} is {}: {reason}", container.status);
    }
    if !text {
        println!("{}", serde_json::to_string_pretty(&container)?);
        return Ok(());
    }
    println!("=> Container created successfully ===> {id}");
    if container.status != ContainerStatus::Running {
        let reason = container.reason.clone().unwrap_or_default();
        println!("   It has already ended: {} ({reason})", container.status);
    }
    println!();
    if container.urls.is_empty() {
        println!("The container exposes no ports; pass --ports to reach it through a URL.");
    }
    for url in &container.urls {
        println!("✨ Container hosted at: {url}");
    }
    Ok(())
}

/// Flags to an API request. Values are passed as typed so the server validates them.
fn request(args: &RunArgs) -> Result<CreateContainerRequest> {
    let mut env = BTreeMap::new();
    for pair in &args.env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--env {pair:?} is not NAME=VALUE"))?;
        env.insert(k.to_string(), v.to_string());
    }
    let mut ports = args.ports.clone();
    ports.extend(&args.port);
    let image = match &args.image {
        Some(reference) => {
            if !args.build.is_empty() {
                bail!("--image runs a registry image as it is; use --base-image to build on it");
            }
            ImageSource::Reference(reference.clone())
        }
        None => ImageSource::Spec(crate::commands::image::spec(&args.build)?),
    };
    let volumes = args
        .volumes
        .iter()
        .map(|v| {
            let (name, path) = v
                .split_once(':')
                .ok_or_else(|| anyhow!("--volume {v:?} is not NAME:/PATH"))?;
            Ok(VolumeMount {
                name: name.to_string(),
                mount_path: path.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CreateContainerRequest {
        image,
        ports,
        cpu: args.cpu.as_deref().map(quantity),
        memory: args.memory.as_deref().map(quantity),
        disk: args.disk.as_deref().map(quantity),
        env,
        entrypoint: args.entrypoint.clone(),
        keep_warm_seconds: args.keep_warm_seconds,
        volumes,
        secrets: args.secrets.clone(),
        authorized: args.authorized,
        runtime: args.runtime.map(|r| r.name().to_string()),
        block_network: args.block_network,
        allow_list: args.allow_list.clone(),
        read_only_rootfs: args.read_only,
        privileged_user: args.privileged_user,
        init: match (args.init, args.no_init) {
            (_, true) => Some(false),
            (true, _) => Some(true),
            _ => None,
        },
        stop_signal: args.stop_signal.clone(),
        stop_grace_seconds: args.stop_grace,
        ..Default::default()
    })
}

/// "2" and "0.5" go as numbers, "1500m" and "1Gi" as strings.
fn quantity(text: &str) -> Value {
    serde_json::from_str::<serde_json::Number>(text)
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_keep_their_type() {
        assert_eq!(quantity("2"), serde_json::json!(2));
        assert_eq!(quantity("0.5"), serde_json::json!(0.5));
        assert_eq!(quantity("1Gi"), serde_json::json!("1Gi"));
    }
}
