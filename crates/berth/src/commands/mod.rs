//! One module per verb; each is a short function over the libraries and the API client.

pub mod container;
pub mod image;
pub mod run;
pub mod server;
pub mod shim;

use anyhow::Result;

use crate::cli::{Command, ContainerCommand, ImageCommand};

pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Server(args) => server::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Container(ContainerCommand::List(args)) => container::list(args).await,
        Command::Container(ContainerCommand::Stop(args)) => container::stop(args).await,
        Command::Container(ContainerCommand::Logs(args)) => container::logs(args).await,
        Command::Image(ImageCommand::Build(args)) => image::build(args).await,
        Command::Image(ImageCommand::List(args)) => image::list(args).await,
        Command::Image(ImageCommand::Prune) => image::prune().await,
        // Handled before the async runtime starts.
        Command::Shim(_) => Ok(()),
    }
}
