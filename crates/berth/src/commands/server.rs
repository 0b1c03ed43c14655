//! `berth server`: flags into a server configuration, then run until SIGTERM or Ctrl-C
//! (SIGUSR2: hot restart).

use std::time::Duration;

use anyhow::{Context, Result};
use berth_runtime::RuntimeKind;
use std::net::SocketAddr;

use berth_server::{NodeSettings, Relaunch, ServerConfig, Stop, TlsConfig, TlsSource};

use crate::cli::{JoinTokenArgs, NodeArgs, RuntimeArg, ServerAction, ServerArgs};
use crate::client::Client;

pub async fn run(args: ServerArgs) -> Result<()> {
    match args.action {
        Some(ServerAction::JoinToken(token)) => join_token(token).await,
        None => serve(args).await,
    }
}

async fn join_token(args: JoinTokenArgs) -> Result<()> {
    let created = Client::from_env()?.create_join_token(args.ttl).await?;
    let expires = time::OffsetDateTime::from_unix_timestamp(created.expires_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| created.expires_at.to_string());
    println!("=> Join token, good until {expires}. On the worker, run:");
    println!("   {}", created.join_command);
    if created.node_address.starts_with("0.0.0.0:") || created.node_address.starts_with("[::]:") {
        println!("   (with this server's address in place of the wildcard)");
    }
    println!("{}", created.token);
    Ok(())
}

async fn serve(args: ServerArgs) -> Result<()> {
    raise_open_files_limit();
    let tls = tls_config(&args);
    let berth_exe = std::env::current_exe().context("locating the berth binary")?;
    // A hot restart runs the binary now at this path, so an upgrade installed over it.
    let relaunch = Relaunch {
        exe: berth_exe.clone(),
        args: std::env::args_os().skip(1).collect(),
    };
    let config = ServerConfig {
        state_dir: args.state_dir,
        database_url: args.database_url,
        api_listen: args.api_listen,
        ingress_listen: args.ingress_listen,
        domain: args.domain.trim_matches('.').to_ascii_lowercase(),
        node: node_settings(&args.node)?,
        stop_timeout: Duration::from_secs(args.stop_timeout),
        stop_pods_on_exit: args.stop_pods_on_exit,
        profile_path: berth_api::default_profile_path(),
        wake_timeout: Duration::from_secs(args.wake_timeout),
        tls,
        max_request_body_bytes: args.max_request_body_mib.saturating_mul(1024 * 1024),
        pod_connection_limit: args.max_pod_connections,
        ingress_threads: usize::from(args.ingress_threads),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        upgrade_drain: Duration::from_secs(args.upgrade_drain),
        relaunch: Some(relaunch),
        max_pending_starts: usize::try_from(args.max_pending_starts).unwrap_or(usize::MAX),
        max_pending_builds: usize::try_from(args.max_pending_builds).unwrap_or(usize::MAX),
        node_labels: args.node_labels.into_iter().collect(),
        node_listen: args.node_listen,
        takes_pods: !args.no_pods,
    };
    berth_server::run(config, stop_signals()?).await?;
    Ok(())
}

/// The node flags, shared with `berth worker`, as the server library takes them.
pub fn node_settings(args: &NodeArgs) -> Result<NodeSettings> {
    // The node keeps the network's state under its own state directory.
    let network = args.network.config(std::path::PathBuf::new())?;
    let berth_exe = std::env::current_exe().context("locating the berth binary")?;
    Ok(NodeSettings {
        insecure_registries: args.insecure_registries.clone(),
        registry_mirrors: args.registry_mirrors.clone(),
        runtime: match args.runtime {
            RuntimeArg::Runc => RuntimeKind::Runc,
            RuntimeArg::Gvisor => RuntimeKind::Gvisor,
        },
        runtime_binary: args.runtime_binary.clone(),
        init_binary: args.init_binary.clone(),
        seccomp: !args.unsafe_no_seccomp,
        warm_networks: args.warm_networks.into(),
        subnet_v4: network.subnet_v4,
        subnet_v6: network.subnet_v6,
        bridge: network.bridge,
        cni_bin_dir: network.cni_bin_dir,
        shim_exe: shim_binary(&berth_exe)?,
        berth_exe,
        build_ca_bundle: match args.build_ca_bundle.as_str() {
            "none" | "" => None,
            path => {
                let path = std::path::PathBuf::from(path);
                if !path.is_file() {
                    anyhow::bail!(
                        "--build-ca-bundle {} is not a file (use \"none\" for no bundle)",
                        path.display()
                    );
                }
                Some(path)
            }
        },
        dns: args.dns.clone(),
        max_code_bytes: args.max_code_mib.saturating_mul(1024 * 1024),
        container_log_max_bytes: args.container_log_max_mib.saturating_mul(1024 * 1024),
        log_retention: (args.log_retention_hours > 0)
            .then(|| Duration::from_secs(args.log_retention_hours.saturating_mul(3600))),
    })
}

/// SIGTERM and Ctrl-C stop the server; SIGUSR2 hot-restarts it.
fn stop_signals() -> Result<tokio::sync::mpsc::UnboundedReceiver<Stop>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut usr2 = signal(SignalKind::user_defined2()).context("listening for SIGUSR2")?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let stop = tokio::select! {
                _ = term.recv() => Stop::Shutdown,
                _ = int.recv() => Stop::Shutdown,
                _ = usr2.recv() => Stop::Upgrade,
            };
            if tx.send(stop).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

/// TLS is on when any TLS flag is given; the certificate source follows from which.
fn tls_config(args: &ServerArgs) -> Option<TlsConfig> {
    let source = match (&args.tls_cert, &args.tls_key, &args.acme_email) {
        (Some(cert), Some(key), _) => TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        (_, _, Some(email)) => TlsSource::Acme {
            directory_url: args
                .acme_directory
                .clone()
                .unwrap_or_else(|| berth_server::LETS_ENCRYPT.to_string()),
            email: Some(email.clone()),
            directory_ca: args.acme_directory_ca.clone(),
        },
        _ if args.tls || args.ingress_tls_listen.is_some() => TlsSource::LocalCa,
        _ => return None,
    };
    let listen = args
        .ingress_tls_listen
        .unwrap_or_else(|| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 443)));
    Some(TlsConfig { listen, source })
}

/// Each proxied connection holds two descriptors (the client's and the pod's), so the usual
/// soft limit of 1024 would cap the ingress near 500 connections. The hard limit is what the
/// operator allows; take all of it, as nginx's `worker_rlimit_nofile` and Go programs do.
fn raise_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("raising the open-files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("reading the open-files limit: {e}"),
    }
}

/// `berth-shim`, installed beside `berth` (scripts/install.sh, or `cargo build --bins`).
fn shim_binary(berth_exe: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let shim = berth_exe.with_file_name("berth-shim");
    anyhow::ensure!(
        shim.is_file(),
        "{} is missing: berth-shim is installed beside berth (bash scripts/install.sh, or \
         cargo build --workspace --bins)",
        shim.display()
    );
    Ok(shim)
}
