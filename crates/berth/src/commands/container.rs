//! `berth container list | stop | logs | token | revoke | exec` (`cp` has its own module).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_api::Container;
use futures_util::StreamExt;

use crate::cli::{ExecArgs, Format, ListArgs, LogsArgs, RevokeArgs, StopArgs, TokenArgs};
use crate::client::Client;

pub async fn list(args: ListArgs) -> Result<()> {
    let containers = Client::from_env()?.list(args.all).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&containers)?),
        Format::Text => print!(
            "{}",
            table(
                &containers,
                time::OffsetDateTime::now_utc().unix_timestamp()
            )
        ),
    }
    Ok(())
}

fn table(containers: &[Container], now: i64) -> String {
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            let uptime = match (c.started_at, c.finished_at) {
                (Some(s), Some(f)) => human(f - s),
                (Some(s), None) => human(now - s),
                _ => String::new(),
            };
            vec![
                c.id.clone(),
                c.status.to_string(),
                c.stub_id.clone(),
                c.deployment_id.clone().unwrap_or_default(),
                format!("{} ago", human(now - c.scheduled_at)),
                uptime,
                c.node.clone().unwrap_or_default(),
            ]
        })
        .collect();
    crate::commands::table::render(
        &[
            "ID",
            "Status",
            "Stub ID",
            "Deployment ID",
            "Scheduled At",
            "Uptime",
            "Node",
        ],
        &rows,
    )
}

pub(crate) fn human(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// Stops asked for at once, so many pods take about one grace period, not one each.
const CONCURRENT_STOPS: usize = 32;

/// Stops the containers concurrently (bounded), printing each result as it comes.
pub async fn stop(args: StopArgs) -> Result<()> {
    let client = Client::from_env()?;
    let ids = targets(&client, &args).await?;
    if ids.is_empty() {
        println!("No containers to stop");
        return Ok(());
    }
    let client = &client;
    let (grace, no_wait) = (args.grace, args.no_wait);
    let mut results = futures_util::stream::iter(&ids)
        .map(|id| async move {
            let ended = async {
                let stopping = client.stop(id, grace).await?;
                if no_wait {
                    return Ok(None);
                }
                let grace = grace.unwrap_or(stopping.stop_grace_seconds);
                wait_ended(client, id, grace).await.map(Some)
            };
            (id, ended.await)
        })
        .buffer_unordered(CONCURRENT_STOPS);
    let mut failed = 0;
    while let Some((id, result)) = results.next().await {
        match result {
            Ok(None) => println!("Stopping {id}"),
            Ok(Some(c)) => println!("Stopped {id} ({})", ended_words(&c)),
            Err(e) => {
                eprintln!("error: {id}: {e:#}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers could not be stopped", ids.len());
    }
    Ok(())
}

/// The ids to stop: those given, or the running and starting containers `--all`,
/// `--deployment` or `--image` picks.
async fn targets(client: &Client, args: &StopArgs) -> Result<Vec<String>> {
    if !args.ids.is_empty() {
        return Ok(args.ids.clone());
    }
    if let Some(name) = &args.deployment {
        let deployment = client
            .deployments()
            .await?
            .into_iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| anyhow::anyhow!("no deployment named {name:?}"))?;
        return Ok(deployment.containers);
    }
    let active = client.list(false).await?;
    Ok(active
        .into_iter()
        .filter(|c| args.image.as_ref().is_none_or(|image| &c.image == image))
        .map(|c| c.id)
        .collect())
}

/// `STOPPED: stopped by request (SIGTERM)`.
fn ended_words(c: &Container) -> String {
    match &c.reason {
        Some(reason) => format!("{}: {reason}", c.status),
        None => c.status.to_string(),
    }
}

async fn wait_ended(client: &Client, id: &str, grace: u64) -> Result<Container> {
    // The server escalates to SIGKILL after the grace period; allow for that and teardown.
    let limit = Duration::from_secs(grace + 30);
    let start = Instant::now();
    loop {
        let c = client.get(id).await?;
        if c.status.is_terminal() {
            return Ok(c);
        }
        if start.elapsed() > limit {
            bail!("still {} after {:?}", c.status, limit);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn logs(args: LogsArgs) -> Result<()> {
    let resp = Client::from_env()?.logs(&args.id, args.follow).await?;
    print_log(resp, args.timestamps).await
}

/// Prints a log response line by line as it arrives.
pub async fn print_log(resp: reqwest::Response, timestamps: bool) -> Result<()> {
    use std::io::Write;
    let mut stream = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk?);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let shown = if timestamps {
                line.into_owned()
            } else {
                message(&line)
            };
            out.write_all(shown.as_bytes())?;
        }
        out.flush()?;
    }
    Ok(())
}

/// `<time> <stream> <text>` → `<text>`; other lines as they are.
fn message(line: &str) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let mut parts = body.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(_), Some("stdout" | "stderr")) => format!("{}\n", parts.next().unwrap_or("")),
        _ => line.to_string(),
    }
}

pub async fn token(args: TokenArgs) -> Result<()> {
    let ttl = args.ttl;
    let token = Client::from_env()?
        .create_pod_token(
            &args.id,
            &berth_api::CreatePodTokenRequest {
                port: args.port,
                ttl_seconds: ttl,
            },
        )
        .await?;
    let Some(secret) = token.token else {
        anyhow::bail!("the server returned no token");
    };
    println!(
        "Token {} opens {} for {} (revoke: berth container revoke {} {}).",
        token.id,
        token.url,
        human(i64::try_from(ttl).unwrap_or(i64::MAX)),
        token.container_id,
        token.id
    );
    println!(
        "Send it as Authorization: Bearer <token>, or open {}?berth_token=<token> once in a browser.",
        token.url
    );
    println!("{secret}");
    Ok(())
}

pub async fn revoke(args: RevokeArgs) -> Result<()> {
    Client::from_env()?
        .revoke_pod_token(&args.id, &args.token_id)
        .await?;
    println!("Revoked {}", args.token_id);
    Ok(())
}

/// `K=V` arguments as a map.
pub fn parse_env(pairs: &[String]) -> Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| anyhow::anyhow!("--env {kv:?} is not K=V"))
        })
        .collect()
}

/// Runs the command, copies its output to ours as it comes, and exits with its code.
pub async fn exec(args: ExecArgs) -> Result<()> {
    use std::io::Write;
    let req = berth_api::ExecRequest {
        command: args.command,
        env: parse_env(&args.env)?,
        workdir: args.workdir,
        timeout_seconds: args.timeout,
    };
    if args.interactive && !args.tty {
        anyhow::bail!(
            "-i without -t is not offered: stdin reaches a command on a terminal (-it), or pipe it with sh -c"
        );
    }
    if args.tty {
        let code = super::terminal::run(&args.id, &req).await?;
        std::process::exit(u8::try_from(code).map_or(255, i32::from));
    }
    let code = Client::from_env()?
        .exec(&args.id, &req, &mut |event| match event {
            berth_api::ExecEvent::Stdout(text) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            }
            berth_api::ExecEvent::Stderr(text) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
            }
            _ => {}
        })
        .await?;
    // The command's own code, as docker exec does (255 stands for codes out of range).
    std::process::exit(u8::try_from(code).map_or(255, i32::from));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_their_prefix() {
        assert_eq!(
            message("2026-11-28T13:01:33Z stdout hello world\n"),
            "hello world\n"
        );
        assert_eq!(message("2026-11-28T13:01:33Z stderr\n"), "\n");
        assert_eq!(message("garbage\n"), "garbage\n");
    }

    #[test]
    fn durations_read_like_words() {
        assert_eq!(human(1), "1 second");
        assert_eq!(human(5), "5 seconds");
        assert_eq!(human(120), "2 minutes");
        assert_eq!(human(7200), "2 hours");
    }
}
