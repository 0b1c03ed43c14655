//! One module per verb; each is a short function over the libraries and the API client.

pub mod ca;
pub mod container;
pub mod context;
pub mod cp;
pub mod deploy;
pub mod doctor;
pub mod image;
pub mod node;
pub mod progress;
pub mod python;
pub mod resources;
pub mod run;
pub mod server;
pub mod table;
pub mod terminal;
pub mod worker;

use anyhow::Result;

use crate::cli::{
    Command, ContainerCommand, DeploymentCommand, ImageCommand, NodeCommand, SecretCommand,
    VolumeCommand,
};

pub async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Server(args) => server::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Deploy(args) => deploy::deploy(args),
        Command::Deployment(DeploymentCommand::List(args)) => deploy::list(args).await,
        Command::Deployment(DeploymentCommand::Stop(args)) => deploy::stop(args).await,
        Command::Deployment(DeploymentCommand::Delete(args)) => deploy::delete(args).await,
        Command::Deployment(DeploymentCommand::Logs(args)) => deploy::logs(args).await,
        Command::Volume(VolumeCommand::List(args)) => resources::volume_list(args).await,
        Command::Volume(VolumeCommand::Delete(args)) => resources::volume_delete(args).await,
        Command::Secret(SecretCommand::Create(args)) => resources::secret_create(args).await,
        Command::Secret(SecretCommand::List(args)) => resources::secret_list(args).await,
        Command::Secret(SecretCommand::Delete(args)) => resources::secret_delete(args).await,
        Command::Container(ContainerCommand::List(args)) => container::list(args).await,
        Command::Container(ContainerCommand::Stop(args)) => container::stop(args).await,
        Command::Container(ContainerCommand::Logs(args)) => container::logs(args).await,
        Command::Container(ContainerCommand::Token(args)) => container::token(args).await,
        Command::Container(ContainerCommand::Revoke(args)) => container::revoke(args).await,
        Command::Container(ContainerCommand::Exec(args)) => container::exec(args).await,
        Command::Container(ContainerCommand::Cp(args)) => cp::cp(args).await,
        Command::Shell(args) => terminal::shell(args).await,
        Command::Node(NodeCommand::List(args)) => node::list(args).await,
        Command::Node(NodeCommand::Delete(args)) => node::delete(args).await,
        Command::Ca(args) => ca::ca(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Image(ImageCommand::Build(args)) => image::build(*args).await,
        Command::Image(ImageCommand::List(args)) => image::list(args).await,
        Command::Image(ImageCommand::Prune) => image::prune().await,
        // Handled before the async runtime starts.
        Command::EnvRuntime(_) => Ok(()),
    }
}
