//! tupper-supervisor: the unprivileged command users run. It holds no
//! privileges; every privileged step is a request to a helper. This binary
//! only parses the command line; the work is in `tupper_runtime`.

use clap::{Parser, Subcommand};

use tupper_runtime::error::EXIT_RUNTIME;
use tupper_runtime::run::RunOptions;
use tupper_runtime::{containers, control, files, images, oci, run, signals};

#[derive(Parser)]
#[command(
    name = "tupper-supervisor",
    about = "Run Linux containers without root"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a command in a new container from IMAGE.
    // `-h` is the hostname, as in docker: help is `--help` only.
    #[command(disable_help_flag = true)]
    Run(Box<RunOptions>),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List containers.
    Ps {
        /// Include exited containers.
        #[arg(short, long)]
        all: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: containers::Format,
        /// Only containers matching name=N, id=PREFIX or status=created|running|exited.
        #[arg(short, long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
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
    /// Change the resource limits of containers: a running one at once, a
    /// stopped one at its next start. Limits not given keep their values.
    Update {
        #[command(flatten)]
        limits: tupper_runtime::limits::LimitFlags,
        #[arg(required = true)]
        containers: Vec<String>,
    },

    // --- files in and out of containers ---
    /// Make a new image from a container's root filesystem (a read-only
    /// btrfs snapshot: no data is copied, so it is instant whatever the size).
    /// A running container is snapshotted as it is at that instant
    /// (crash-consistent: what a power cut would leave). An existing image
    /// name is refused; remove it first with `image rm`.
    Commit { container: String, image: String },
    /// Write a container's root filesystem as a tarball (to standard output,
    /// which must not be a terminal, or to FILE); `image import` takes it.
    Export {
        /// Write to FILE instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        container: String,
    },
    /// Copy files between the host and a container (running or exited):
    /// `cp CONTAINER:PATH DEST` or `cp SRC CONTAINER:PATH`; `-` is a tar on
    /// standard input or output. Only the container's root filesystem is
    /// seen: not its volumes or tmpfs mounts.
    Cp { src: String, dest: String },

    // --- into running containers (issue 8) ---
    /// Run a command in a running container, with the container's
    /// namespaces, environment and lock-down.
    Exec(Box<tupper_runtime::exec::ExecOptions>),
    /// The processes of a running container, as seen from inside.
    Top { container: String },
    // --- containers that outlive the command (issue 8) ---
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Send a signal to containers' main process.
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to exit and print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Start exited containers again, on the same root.
    Start {
        /// Attach to the container's output (and input with -i).
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers.
    Restart {
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Attach to a running container's output (and input, if run with -i).
    Attach { container: String },
    /// Print a container's output.
    Logs {
        /// Keep printing until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Prefix each line with its time.
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Describe containers as JSON.
    Inspect {
        #[arg(required = true)]
        containers: Vec<String>,
    },

    // --- images from registries (issue 10, engineer "pull") ---
    /// Pull an image from a registry: `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`.
    Pull(tupper_runtime::registry::PullOptions),
    /// Check credentials against a registry and store them for `pull`.
    Login(tupper_runtime::registry::login::LoginOptions),
    /// Remove the stored credentials of a registry (or all).
    Logout(tupper_runtime::registry::login::LogoutOptions),
    // Issue 9: resource use, from the containers' cgroups.
    /// Memory, CPU and pids of running containers (all, or those named).
    Stats {
        /// One sample, then exit.
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: containers::Format,
        containers: Vec<String>,
    },
    // --- packages, doctor, version (issue 12) ---
    /// Check everything a first `run` needs, each failure with its fix
    /// (exit status 1 when something failed).
    Doctor {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: tupper_runtime::doctor::Format,
    },
    /// Print the version and the helper protocol version.
    Version,
    /// Write man pages or shell completions (used when building the packages).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: Generated,
        dir: std::path::PathBuf,
    },
}

/// What `generate` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Generated {
    Man,
    Completions,
}

/// `--version` and `version`: the release and the helper protocol.
fn version() -> String {
    format!(
        "{} (protocol {})",
        env!("CARGO_PKG_VERSION"),
        proto::PROTOCOL_VERSION
    )
}

/// The command-line definition, with the version filled in.
fn cli_command() -> clap::Command {
    use clap::CommandFactory;
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    Cli::command().version(VERSION.get_or_init(version).as_str())
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an image: a root filesystem tarball (plain, gzip or zstd; `-`
    /// reads standard input), an OCI image layout (directory or tar) or a
    /// Docker archive, recognised by content.
    Import { name: String, file: String },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// `json` for a JSON array.
        #[arg(long)]
        format: Option<String>,
    },
    // --- OCI images (issue 10, engineer "oci") ---
    /// Load an OCI image layout (directory or tar), a Docker archive or a
    /// root filesystem tarball; NAME defaults to the name the archive gives.
    Load { file: String, name: Option<String> },
    /// Print images' metadata and configuration as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Give image SOURCE the further name TARGET.
    Tag { source: String, target: String },
    /// Remove layers no image uses.
    Prune,
    /// Remove images.
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `image load`/`image import` of a file in any format (issue 10).
fn oci_load(file: &str, name: Option<&str>) -> tupper_runtime::error::Result<i32> {
    let key = oci::load(std::path::Path::new(file), name)?;
    println!("loaded {}", proto::reference::Reference::from_key(&key));
    Ok(0)
}

fn stdin_import(name: &str, file: &str) -> tupper_runtime::error::Result<i32> {
    images::import(&proto::reference::key_of(name)?, file)?;
    Ok(0)
}

fn main() {
    use clap::FromArgMatches;
    let parsed = cli_command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            // --help, --version
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let missing =
                e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand;
            let (line, hint) =
                tupper_runtime::usage::format(&e.render().to_string(), missing, &args);
            eprintln!("{line}\n{hint}");
            std::process::exit(EXIT_RUNTIME);
        }
    };
    let result = match cli.command {
        Command::Run(opts) => {
            signals::Signals::install().and_then(|signals| run::run(*opts, &signals))
        }
        Command::Image(ImageCommand::Import { name, file }) if file == "-" => {
            stdin_import(&name, &file)
        }
        Command::Image(ImageCommand::Import { name, file }) => oci_load(&file, Some(&name)),
        Command::Image(ImageCommand::Load { file, name }) => oci_load(&file, name.as_deref()),
        Command::Image(ImageCommand::Ls { format }) => {
            oci::list(format.as_deref() == Some("json")).map(|_| 0)
        }
        Command::Image(ImageCommand::Inspect { names }) => oci::inspect(&names).map(|_| 0),
        Command::Image(ImageCommand::Tag { source, target }) => {
            oci::tag(&source, &target).map(|_| 0)
        }
        Command::Image(ImageCommand::Prune) => oci::prune().map(|_| 0),
        Command::Image(ImageCommand::Rm { names }) => images::remove(&names).map(|_| 0),
        Command::Ps {
            all,
            format,
            filter,
        } => containers::ps(all, format, &filter).map(|_| 0),
        Command::Rm { force, containers } => containers::rm(&containers, force).map(|_| 0),
        Command::Gc => containers::gc().map(|_| 0),
        Command::Update { limits, containers } => {
            tupper_runtime::limits::update(&containers, &limits)
        }
        Command::Commit { container, image } => files::commit(&container, &image).map(|_| 0),
        Command::Export { output, container } => {
            files::export(&container, output.as_deref()).map(|_| 0)
        }
        Command::Cp { src, dest } => files::cp(&src, &dest).map(|_| 0),
        Command::Exec(opts) => signals::Signals::install()
            .and_then(|signals| tupper_runtime::exec::exec(*opts, &signals)),
        Command::Top { container } => tupper_runtime::exec::top(&container).map(|_| 0),
        Command::Stop { time, containers } => control::stop(&containers, time).map(|_| 0),
        Command::Kill { signal, containers } => control::kill(&containers, &signal).map(|_| 0),
        Command::Wait { containers } => control::wait(&containers).map(|_| 0),
        Command::Start { attach, containers } => signals::Signals::install()
            .and_then(|signals| control::start(&containers, attach, &signals)),
        Command::Restart { time, containers } => control::restart(&containers, time).map(|_| 0),
        Command::Attach { container } => {
            signals::Signals::install().and_then(|signals| control::attach(&container, &signals))
        }
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => control::logs(
            &container,
            &tupper_runtime::logs::LogOptions {
                follow,
                tail,
                timestamps,
            },
        )
        .map(|_| 0),
        Command::Inspect { containers } => control::inspect(&containers).map(|_| 0),
        Command::Pull(opts) => tupper_runtime::registry::pull(&opts).map(|_| 0),
        Command::Login(opts) => tupper_runtime::registry::login::login(&opts).map(|_| 0),
        Command::Logout(opts) => tupper_runtime::registry::login::logout(&opts).map(|_| 0),
        Command::Stats {
            no_stream,
            format,
            containers,
        } => tupper_runtime::stats::stats(&containers, no_stream, format).map(|_| 0),
        Command::Doctor { format } => tupper_runtime::doctor::doctor(format),
        Command::Version => {
            println!("tupper-supervisor {}", version());
            Ok(0)
        }
        Command::Generate { what, dir } => match what {
            Generated::Man => tupper_runtime::generate::man_pages(cli_command(), &dir),
            Generated::Completions => tupper_runtime::generate::completions(cli_command(), &dir),
        }
        .map(|_| 0),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_docker_style_options() {
        let cli = Cli::try_parse_from([
            "tupper-supervisor",
            "run",
            "--rm",
            "-it",
            "-h",
            "box",
            "-e",
            "A=b",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "echo -n hi",
        ])
        .unwrap();
        let Command::Run(o) = cli.command else {
            panic!("not run")
        };
        assert!(o.remove && o.interactive && o.tty);
        assert_eq!(o.hostname.as_deref(), Some("box"));
        assert_eq!(o.env, ["A=b"]);
        assert_eq!(o.command, ["sh", "-c", "echo -n hi"]);
        assert!(
            Cli::try_parse_from(["tupper-supervisor", "run", "--network", "bogus", "x"]).is_err()
        );
        let cli = Cli::try_parse_from([
            "tupper-supervisor",
            "run",
            "-u",
            "1000:1000",
            "--cap-add",
            "NET_ADMIN",
            "--cap-drop=ALL",
            "--security-opt",
            "no-new-privileges",
            "--init",
            "--entrypoint",
            "",
            "--env-file",
            "f",
            "-e",
            "KEY",
            "--network",
            "host",
            "busybox",
            "id",
        ])
        .unwrap();
        let Command::Run(o) = cli.command else {
            panic!("not run")
        };
        assert_eq!(o.sec.user.as_deref(), Some("1000:1000"));
        assert_eq!(o.sec.cap_add, ["NET_ADMIN"]);
        assert_eq!(o.sec.cap_drop, ["ALL"]);
        assert!(o.sec.init && o.sec.entrypoint.as_deref() == Some(""));
        assert_eq!(o.network, tupper_runtime::run::NetworkMode::Host);
        assert_eq!(o.command, ["id"]);
    }

    #[test]
    fn exec_takes_podman_style_options() {
        let cli = Cli::try_parse_from([
            "tupper-supervisor",
            "exec",
            "-it",
            "-e",
            "A=b",
            "-w",
            "/tmp",
            "-u",
            "1000",
            "box",
            "sh",
            "-c",
            "exit 7",
        ])
        .unwrap();
        let Command::Exec(o) = cli.command else {
            panic!("not exec")
        };
        assert!(o.interactive && o.tty && !o.privileged);
        assert_eq!(
            (o.env.as_slice(), o.workdir.as_deref()),
            (&["A=b".to_string()][..], Some("/tmp"))
        );
        assert_eq!(
            (o.user.as_deref(), o.container.as_str()),
            (Some("1000"), "box")
        );
        assert_eq!(o.command, ["sh", "-c", "exit 7"]);
        assert!(Cli::try_parse_from(["tupper-supervisor", "exec", "box"]).is_err());
    }
}
