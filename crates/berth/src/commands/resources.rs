//! `berth volume list | delete` and `berth secret create | list | delete`.

use std::io::Read;

use anyhow::{bail, Context, Result};

use crate::cli::{DeploymentListArgs, Format, NameArg, SecretCreateArgs};
use crate::client::Client;

pub async fn volume_list(args: DeploymentListArgs) -> Result<()> {
    let volumes = Client::from_env()?.volumes().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&volumes)?),
        Format::Text => {
            let rows: Vec<Vec<String>> = volumes
                .iter()
                .map(|v| vec![v.name.clone(), human_bytes(v.size_bytes)])
                .collect();
            print!(
                "{}",
                crate::commands::table::render(&["Name", "Size"], &rows)
            );
        }
    }
    Ok(())
}

pub async fn volume_delete(args: NameArg) -> Result<()> {
    Client::from_env()?.delete_volume(&args.name).await?;
    println!("=> Deleted volume {}", args.name);
    Ok(())
}

pub async fn secret_create(args: SecretCreateArgs) -> Result<()> {
    let value = match args.value {
        Some(v) => v,
        None => {
            let mut v = String::new();
            std::io::stdin()
                .read_to_string(&mut v)
                .context("reading the secret's value from stdin")?;
            // `echo value | berth secret create NAME` adds a newline the user did not mean.
            v.strip_suffix('\n').map(str::to_string).unwrap_or(v)
        }
    };
    if value.is_empty() {
        bail!(
            "the secret {} has an empty value; pass it as an argument or on stdin",
            args.name
        );
    }
    Client::from_env()?.put_secret(&args.name, &value).await?;
    println!("=> Stored secret {}", args.name);
    Ok(())
}

pub async fn secret_list(args: DeploymentListArgs) -> Result<()> {
    let secrets = Client::from_env()?.secrets().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&secrets)?),
        Format::Text => {
            let rows: Vec<Vec<String>> = secrets.iter().map(|s| vec![s.name.clone()]).collect();
            print!("{}", crate::commands::table::render(&["Name"], &rows));
        }
    }
    Ok(())
}

pub async fn secret_delete(args: NameArg) -> Result<()> {
    Client::from_env()?.delete_secret(&args.name).await?;
    println!("=> Deleted secret {}", args.name);
    Ok(())
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
