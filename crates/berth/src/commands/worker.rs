//! `berth worker`: join a server with a token once, then register what this machine offers
//! and heartbeat until stopped.

use std::os::unix::fs::DirBuilderExt;

use anyhow::{bail, Context, Result};
use berth_cluster::{
    facts, host_port, ControlPlane, Credentials, JoinError, JoinToken, Registration,
    HEARTBEAT_INTERVAL,
};

use berth_server::worker::WorkerNode;

use crate::cli::WorkerArgs;

pub async fn run(args: WorkerArgs) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let credentials = match Credentials::load(&args.state_dir)? {
        Some(saved) => {
            if let Some(join) = &args.join {
                if host_port(join)? != saved.control_plane {
                    bail!(
                        "this worker joined {} already; to join {join} instead, remove {}",
                        saved.control_plane,
                        Credentials::path(&args.state_dir).display()
                    );
                }
            }
            println!("=> Node {} of {}", saved.node_id, saved.control_plane);
            saved
        }
        None => {
            let (Some(join), Some(token)) = (&args.join, &args.token) else {
                bail!(
                    "this worker has not joined a server yet: run it with --join ADDR:PORT \
                     --token TOKEN (`berth server join-token` on the server prints both)"
                );
            };
            let token = JoinToken::parse(token)?;
            println!("=> Joining {join}");
            let joined = ControlPlane::join(join, &token)
                .await
                .with_context(|| format!("joining {join}"))?;
            joined.save(&args.state_dir)?;
            println!("=> Joined {} as {}", joined.control_plane, joined.node_id);
            joined
        }
    };
    let plane = ControlPlane::connect(&credentials).await?;
    let settings = super::server::node_settings(&args.node)?;
    let node = WorkerNode::start(
        &args.state_dir,
        &settings,
        args.agent_listen,
        &credentials.identity()?,
    )
    .await?;
    println!("=> Agent listening on {}", node.agent_addr());
    let (cpu_millis, memory_mib) = facts::capacity();
    let registration = Registration {
        hostname: facts::hostname(),
        cpu_millis,
        memory_mib,
        runtimes: node.runtimes(),
        labels: args.node_labels.into_iter().collect(),
        agent_port: Some(node.agent_addr().port()),
    };
    let mut stop = std::pin::pin!(stop_signal());
    tokio::select! {
        registered = register(&plane, &registration) => registered?,
        _ = &mut stop => return Ok(()),
    }
    println!(
        "=> Registered {}: {} CPUs, {memory_mib} MiB, runtimes {}",
        credentials.node_id,
        cpu_millis / 1000,
        registration.runtimes.join(",")
    );
    let mut reachable = true;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
            _ = &mut stop => break,
        }
        match plane.heartbeat().await {
            Ok(()) => {
                if !reachable {
                    println!("=> Heartbeats reach the server again");
                }
                reachable = true;
            }
            // The server forgot this node (its state was reset): say again what it offers.
            Err(JoinError::Refused { status: 409, .. }) => {
                register(&plane, &registration).await?;
            }
            Err(e @ JoinError::Refused { status: 401, .. }) => {
                bail!("the server no longer takes this worker: {e}")
            }
            Err(e) => {
                if reachable {
                    eprintln!("=> Heartbeat failed, retrying every {HEARTBEAT_INTERVAL:?}: {e}");
                }
                reachable = false;
            }
        }
    }
    node.release_host_resources();
    println!("=> Worker stopped; its pods keep running for its next start");
    Ok(())
}

/// Registers, retrying while the server is unreachable; a refusal is final.
async fn register(plane: &ControlPlane, registration: &Registration) -> Result<()> {
    loop {
        match plane.register(registration).await {
            Ok(()) => return Ok(()),
            Err(e @ JoinError::Refused { status: 401, .. }) => {
                bail!("the server no longer takes this worker: {e}")
            }
            Err(e @ JoinError::Refused { .. }) => return Err(e).context("registering"),
            Err(e) => {
                eprintln!("=> Registering failed, retrying: {e}");
                tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            }
        }
    }
}

/// SIGTERM or Ctrl-C.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
