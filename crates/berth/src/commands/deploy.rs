//! `berth deploy`, and `berth deployment list | stop | delete | logs`.

use anyhow::Result;
use berth_api::{Deployment, DeploymentStatus};

use crate::cli::{DeployArgs, DeploymentListArgs, DeploymentLogsArgs, Format, NameArg};
use crate::client::Client;

pub fn deploy(args: DeployArgs) -> Result<()> {
    let mut sdk_args = vec!["deploy", args.app.as_str()];
    if let Some(name) = &args.name {
        sdk_args.extend(["--name", name.as_str()]);
    }
    let dockerfile = args
        .dockerfile
        .dockerfile
        .as_ref()
        .map(|p| p.display().to_string());
    let context = args
        .dockerfile
        .context
        .as_ref()
        .map(|p| p.display().to_string());
    if let Some(path) = &dockerfile {
        sdk_args.extend(["--dockerfile", path.as_str()]);
    }
    if let Some(dir) = &context {
        sdk_args.extend(["--context", dir.as_str()]);
    }
    for arg in &args.dockerfile.build_args {
        sdk_args.extend(["--build-arg", arg.as_str()]);
    }
    crate::commands::python::run_sdk(&sdk_args)
}

pub async fn list(args: DeploymentListArgs) -> Result<()> {
    let deployments = Client::from_env()?.deployments().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&deployments)?),
        Format::Text => {
            let rows: Vec<Vec<String>> = deployments.iter().map(row).collect();
            print!(
                "{}",
                crate::commands::table::render(
                    &["Name", "Status", "Version", "Containers", "URLs"],
                    &rows
                )
            );
        }
    }
    Ok(())
}

fn row(d: &Deployment) -> Vec<String> {
    let status = match d.status {
        DeploymentStatus::Active if d.version.is_none() => "DEPLOYING",
        DeploymentStatus::Active => "ACTIVE",
        DeploymentStatus::Stopped => "STOPPED",
    };
    vec![
        d.name.clone(),
        status.to_string(),
        d.version.map(|v| format!("v{v}")).unwrap_or_default(),
        d.containers.len().to_string(),
        d.urls.join(" "),
    ]
}

pub async fn stop(args: NameArg) -> Result<()> {
    let d = Client::from_env()?.stop_deployment(&args.name).await?;
    println!(
        "=> Stopped deployment {} ({} containers stopping)",
        d.name,
        d.containers.len()
    );
    Ok(())
}

pub async fn delete(args: NameArg) -> Result<()> {
    Client::from_env()?.delete_deployment(&args.name).await?;
    println!("=> Deleted deployment {}", args.name);
    Ok(())
}

pub async fn logs(args: DeploymentLogsArgs) -> Result<()> {
    let resp = Client::from_env()?
        .deployment_logs(&args.name, args.follow)
        .await?;
    crate::commands::container::print_log(resp, false).await
}
