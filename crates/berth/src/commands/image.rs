//! `berth image build | list | prune`, and turning build flags into an image spec.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context, Result};
use berth_api::ImageSpec;

use crate::cli::{BuildArgs, Format, ImageBuildArgs, ImageListArgs};
use crate::client::Client;

pub async fn build(args: ImageBuildArgs) -> Result<()> {
    let client = Client::from_env()?;
    let spec = uploaded_spec(&args.build, &client).await?;
    let mut progress = crate::commands::progress::Progress::new();
    let image = client
        .build(&spec, args.push.as_deref(), &mut |line| progress.line(line))
        .await?;
    progress.finish();
    println!("{image}");
    Ok(())
}

pub async fn list(args: ImageListArgs) -> Result<()> {
    let images = Client::from_env()?.images().await?.images;
    if args.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(());
    }
    let width = images
        .iter()
        .map(|i| i.reference.len())
        .max()
        .unwrap_or(0)
        .max(9);
    println!(
        "{:<width$}  {:>6}  {:>10}  BUILT",
        "REFERENCE", "LAYERS", "SIZE"
    );
    for i in &images {
        println!(
            "{:<width$}  {:>6}  {:>7.1} MB  {}",
            i.reference,
            i.layers,
            i.size_bytes as f64 / 1_000_000.0,
            if i.built { "yes" } else { "" }
        );
    }
    println!("\n  {} images", images.len());
    Ok(())
}

pub async fn prune() -> Result<()> {
    let result = Client::from_env()?.prune_images().await?;
    for image in &result.removed_images {
        println!("removed {image}");
    }
    println!(
        "{} images and {} layers removed, {:.1} MB freed",
        result.removed_images.len(),
        result.removed_layers,
        result.freed_bytes as f64 / 1_000_000.0
    );
    Ok(())
}

/// The image spec the build flags describe, with a Dockerfile's context packed and
/// uploaded (unless the server has it already).
pub async fn uploaded_spec(args: &BuildArgs, client: &Client) -> Result<ImageSpec> {
    let mut spec = spec(args)?;
    if let Some(path) = &args.dockerfile.dockerfile {
        let dir = match &args.dockerfile.context {
            Some(dir) => dir.clone(),
            None => match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => ".".into(),
            },
        };
        let packed = crate::commands::context::pack(&dir)?;
        let uploaded = client.put_code(&packed.digest, packed.archive).await?;
        if uploaded {
            println!(
                "=> Uploaded the build context {} ({} files, {:.1} MB)",
                dir.display(),
                packed.files,
                packed.bytes as f64 / 1_000_000.0
            );
        }
        spec.context = Some(packed.digest);
    }
    Ok(spec)
}

/// The image spec the build flags describe (a Dockerfile's context not yet uploaded).
pub fn spec(args: &BuildArgs) -> Result<ImageSpec> {
    if let Some(path) = &args.dockerfile.dockerfile {
        let dockerfile = std::fs::read_to_string(path)
            .with_context(|| format!("reading the Dockerfile {}", path.display()))?;
        let mut build_args = BTreeMap::new();
        for pair in &args.dockerfile.build_args {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| anyhow!("--build-arg {pair:?} is not NAME=VALUE"))?;
            build_args.insert(k.to_string(), v.to_string());
        }
        // The other build flags go too, so the server names any that cannot go with it.
        return Ok(ImageSpec {
            dockerfile: Some(dockerfile),
            build_args,
            ..spec(&BuildArgs {
                dockerfile: Default::default(),
                ..args.clone()
            })?
        });
    }
    let mut python_packages = args.python_packages.clone();
    if let Some(path) = &args.requirements {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the requirements file {}", path.display()))?;
        python_packages.extend(requirements(&text));
    }
    let mut env_vars = BTreeMap::new();
    for pair in &args.build_env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--build-env {pair:?} is not NAME=VALUE"))?;
        env_vars.insert(k.to_string(), v.to_string());
    }
    Ok(ImageSpec {
        base_image: args.base_image.clone(),
        python_version: args.python_version.clone(),
        python_packages,
        conda_packages: args.conda_packages.clone(),
        conda_channels: args.conda_channels.clone(),
        commands: args.commands.clone(),
        env_vars,
        workdir: args.workdir.as_ref().map(|w| w.display().to_string()),
        steps: Vec::new(),
        dockerfile: None,
        context: None,
        build_args: BTreeMap::new(),
    })
}

/// Requirement lines of a requirements.txt: comments, blank lines and pip options dropped.
fn requirements(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('-'))
        .map(|l| l.replace(' ', ""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirements_files_become_packages() {
        let text = "# deps\nsix==1.16.0\n\nrequests >= 2  # http\n-r other.txt\n";
        assert_eq!(requirements(text), ["six==1.16.0", "requests>=2"]);
    }
}
