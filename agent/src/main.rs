//! `berth`: the Kubernetes CRI v1 node agent. `berth --help` lists the commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use berth::config::{Config, DEFAULT_CONFIG_YAML};
use berth::{server, telemetry, Error};
use clap::{Parser, Subcommand};

mod health;

/// A Kubernetes CRI v1 node agent.
#[derive(Parser)]
#[command(name = "berth", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve CRI v1 on the configured unix socket until SIGTERM or SIGINT.
    Serve {
        /// The config file; without it /etc/berth/config.yaml, or all defaults when
        /// that file does not exist.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Serve the delegate protocol for this berth's own backend (a node agent's
    /// `backends.delegate`) on the `delegate` section's socket and TCP address, until
    /// SIGTERM or SIGINT.
    Delegate {
        /// The config file, as for `serve` (give this berth its own `state_dir` and
        /// `run_dir`).
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Exit 0 when the berth serving CRI answers Status with RuntimeReady and
    /// NetworkReady (for readiness probes); 1 otherwise, saying what is not ready.
    Health {
        /// The config whose `socket` to ask; without it /etc/berth/config.yaml, or
        /// the default socket when that file does not exist.
        #[arg(long, value_name = "PATH", conflicts_with = "socket")]
        config: Option<PathBuf>,
        /// The CRI socket to ask, instead of a config's.
        #[arg(long, value_name = "PATH")]
        socket: Option<PathBuf>,
        /// Seconds to wait for the answer.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        timeout: u64,
    },
    /// Check what berth needs from this host (kernel features, cgroups, CNI, directory
    /// permissions, mirrors and backends it is configured with), print each as ok or
    /// missing with the fix; exit 1 when berth cannot serve.
    Doctor {
        /// The config to check against; as for `serve`.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
    },
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the default config as commented YAML.
    Default,
}

fn main() -> ExitCode {
    // `berth shim …` is a pod's supervisor (the youki backend re-execs this binary):
    // dispatched before clap and any runtime, so that process stays small and single-threaded.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return runtimes::supervisor::main(std::env::args_os().skip(2));
    }
    // `berth log-shim DIR` is a containerd container's log writer, started by its shim.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == runtimes::containerd::logger::ARG)
    {
        return runtimes::containerd::logger::main(std::env::args_os().skip(2));
    }
    let result = match Cli::parse().command {
        Command::Serve { config } => run_with_config(config.as_deref(), server::serve),
        Command::Delegate { config } => run_with_config(config.as_deref(), berth::delegate::serve),
        Command::Health {
            config,
            socket,
            timeout,
        } => match health::run(config.as_deref(), socket, Duration::from_secs(timeout)) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(err) => Err(err),
        },
        Command::Doctor { config } => match Config::load(config.as_deref()) {
            Ok(config) => {
                let checks = berth::doctor::checks(&config);
                for check in &checks {
                    println!("{check}");
                }
                let failing = checks.iter().filter(|c| c.fails()).count();
                if failing == 0 {
                    println!("berth can serve on this host");
                    Ok(())
                } else {
                    println!(
                        "berth cannot serve on this host: {failing} required check(s) missing"
                    );
                    return ExitCode::FAILURE;
                }
            }
            Err(err) => Err(err),
        },
        Command::Config(ConfigCommand::Default) => {
            print!("{DEFAULT_CONFIG_YAML}");
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("berth: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config, starts logging and runs `run` (`berth serve` or `berth delegate`)
/// on a multi-threaded async runtime.
fn run_with_config<F, Fut>(config: Option<&Path>, run: F) -> berth::Result<()>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = berth::Result<()>>,
{
    let config = Config::load(config)?;
    // What the agent holds after a burst (kubelet making a hundred pods at once) is
    // the blocking pool's threads and their malloc arenas: glibc gives each thread
    // that allocates an arena of its own, up to 8 per core, and keeps what they held.
    // Two arenas serve a 2-core node's bursts as well; an idle blocking thread exits
    // after 2 s instead of 10, with its stack.
    #[cfg(target_env = "gnu")]
    // SAFETY: a malloc parameter, set before the runtime's threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    // Inside the runtime: a trace exporter's connection and batch task live on it.
    let traces = {
        let _entered = runtime.enter();
        telemetry::init(&config.log, &config.telemetry.otlp, &config.node_id)?
    };
    let result = runtime.block_on(async {
        // And what a burst freed goes back to the system (glibc keeps it otherwise).
        tokio::spawn(berth::memory::give_back());
        run(config).await
    });
    // The runtime still runs the batch task: the last spans go out before exit.
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}
