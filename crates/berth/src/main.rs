//! `berth`: the server, the per-container shim and the command-line client in one binary.
//! Each verb is a thin function over the libraries (see `commands/`).

mod cli;
mod client;
mod commands;

use clap::Parser;

/// mimalloc over glibc's malloc: the ingress allocates small buffers per request, and glibc
/// spent ~8% of the server's time in malloc/free (and consolidation) under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    // The shim must stay a plain single-threaded process (it reaps children as a subreaper),
    // so it runs before any async runtime exists.
    if let cli::Command::Shim(args) = &cli.command {
        std::process::exit(commands::shim::run(args));
    }
    init_tracing(&cli.command);
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

fn init_tracing(command: &cli::Command) {
    let default = match command {
        cli::Command::Server(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
