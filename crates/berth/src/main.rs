//! `berth`: the server, the per-container shim and the command-line client in one binary.
//! Each verb is a thin function over the libraries (see `commands/`).

mod cli;
mod client;
mod commands;
mod duration;
mod log_sink;

use clap::Parser;

/// mimalloc over glibc's malloc: the ingress allocates small buffers per request, and glibc
/// spent ~8% of the server's time in malloc/free (and consolidation) under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    if let cli::Command::EnvRuntime(args) = &cli.command {
        let error = berth_runtime::env_wrapper::run(&args.runtime, &args.env_file, &args.args);
        eprintln!("berth env-runtime: {error}");
        std::process::exit(1);
    }
    let log_guard = match init_tracing(&cli.command) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(commands::dispatch(cli.command));
    if let (Err(e), Some(_)) = (&result, &log_guard) {
        // The server's log may be a file: the reason it stopped belongs there too.
        tracing::error!("{}", describe(e));
    }
    // Writes out what the server's log writer still holds before the process ends.
    drop(log_guard);
    if let Err(e) = result {
        eprintln!("error: {}", describe(&e));
        std::process::exit(1);
    }
}

/// The error and its causes, each cause once: library errors often already quote their
/// source in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

/// Logs go to stderr, or for the server to its `--log-file`. The server writes a line per
/// ingress request, so its lines are batched in memory and written by a thread (see
/// `log_sink`); the guard flushes them at exit.
fn init_tracing(command: &cli::Command) -> anyhow::Result<Option<log_sink::LogGuard>> {
    let server = match command {
        cli::Command::Server(args) if args.action.is_none() => Some(args),
        _ => None,
    };
    let default = if server.is_some() { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal());
    let Some(args) = server else {
        builder.with_writer(std::io::stderr).init();
        return Ok(None);
    };
    let (writer, guard) = match &args.log_file {
        None => log_sink::stderr(),
        Some(path) => log_sink::file(path, args.log_max_mib.saturating_mul(1024 * 1024))
            .map_err(|e| anyhow::anyhow!("cannot open --log-file {}: {e}", path.display()))?,
    };
    // No terminal colours in a file.
    let ansi = args.log_file.is_none() && std::io::stderr().is_terminal();
    builder.with_ansi(ansi).with_writer(writer).init();
    Ok(Some(guard))
}
