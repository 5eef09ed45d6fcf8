//! tupper-supervisor: the unprivileged command users run. It holds no
//! privileges; every privileged step is a request to a helper.

mod cleanup;
mod containers;
mod error;
mod helpers;
mod images;
mod process;
mod run;
mod signals;
mod state;
mod tty;

use clap::{Parser, Subcommand};

use crate::error::EXIT_RUNTIME;
use crate::run::{NetworkMode, RunOptions};

#[derive(Parser)]
#[command(
    name = "tupper-supervisor",
    version,
    about = "Run Linux containers without root"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container from IMAGE.
    Run {
        /// Remove the container's root filesystem when it exits.
        #[arg(long)]
        rm: bool,
        /// Keep standard input open.
        #[arg(short, long)]
        interactive: bool,
        /// Allocate a pseudo-terminal.
        #[arg(short, long)]
        tty: bool,
        /// Container name (default: the first 12 digits of its id).
        #[arg(long)]
        name: Option<String>,
        /// Hostname inside the container.
        #[arg(long, short = 'h')]
        hostname: Option<String>,
        /// Network: an address on the bridge, or loopback only.
        #[arg(long, value_enum, default_value = "bridge")]
        network: NetworkMode,
        /// Set an environment variable (KEY=VALUE).
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// Working directory inside the container.
        #[arg(short, long, default_value = "/")]
        workdir: String,
        image: String,
        /// Command and arguments (default: /bin/sh).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List containers.
    Ps {
        /// Include exited containers.
        #[arg(short, long)]
        all: bool,
    },
    /// Remove containers.
    Rm {
        /// Kill running containers first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Reclaim what crashed or killed supervisors left behind.
    Gc,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import a rootfs tarball (plain, gzip or zstd; `-` reads standard input).
    Import { name: String, file: String },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_RUNTIME } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Run {
            rm,
            interactive,
            tty,
            name,
            hostname,
            network,
            env,
            workdir,
            image,
            command,
        } => signals::Signals::install().and_then(|signals| {
            run::run(
                RunOptions {
                    remove: rm,
                    interactive,
                    tty,
                    name,
                    hostname,
                    network,
                    env,
                    workdir,
                    image,
                    command,
                },
                &signals,
            )
        }),
        Command::Image(ImageCommand::Import { name, file }) => {
            images::import(&name, &file).map(|_| 0)
        }
        Command::Image(ImageCommand::Ls) => images::list().map(|_| 0),
        Command::Image(ImageCommand::Rm { names }) => images::remove(&names).map(|_| 0),
        Command::Ps { all } => containers::ps(all).map(|_| 0),
        Command::Rm { force, containers } => containers::rm(&containers, force).map(|_| 0),
        Command::Gc => containers::gc().map(|_| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = e.to_string();
            eprintln!("tupper: {}", msg.strip_prefix("tupper: ").unwrap_or(&msg));
            std::process::exit(e.exit_code());
        }
    }
}
