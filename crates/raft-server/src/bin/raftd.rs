//! `raftd`: one member of the replicated key-value service (`run`), development
//! certificates (`certs`) and the quickstart cluster (`local-cluster`). The logic
//! lives in `raft_server::{config, local_cluster, server}`; this file parses flags,
//! sets up logging and maps errors to exit codes: 0 clean stop, 2 bad configuration
//! or flags, 3 data directory unusable or corrupt, 1 anything else.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use raft_server::config::{self, LogFormat, RunArgs};
use raft_server::local_cluster::{self, LocalClusterArgs};
use tracing_subscriber::EnvFilter;

/// Exit code for bad configuration or flags.
const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "raftd",
    version,
    about = "Server of a replicated key-value service on Raft",
    after_help = "Every `run` flag also has a RAFTD_<KEY> environment variable and a config \
                  file key; precedence is flag > environment > file > default. See \
                  docs/configuration.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one cluster member
    Run(Box<RunArgs>),
    /// Write a development CA, one certificate per member and one for clients
    Certs(CertsArgs),
    /// Start (or resume) a cluster of local members on 127.0.0.1
    LocalCluster(LocalClusterArgs),
}

#[derive(Debug, Args)]
struct CertsArgs {
    /// Directory for ca.pem, ca-key.pem, nodeI.pem, nodeI-key.pem, client.pem, client-key.pem
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Number of members (certificates node1..nodeN)
    #[arg(long, value_name = "N", default_value_t = 3)]
    nodes: u64,
    /// Host name or IP of each member, in id order, added to its certificate (localhost and 127.0.0.1 always are)
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    hosts: Vec<String>,
}

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2 (help and version exit 0).
    let cli = Cli::parse();
    // Test builds only: FAILPOINTS=name=action;... injects faults.
    #[cfg(feature = "failpoints")]
    let _failpoints = fail::FailScenario::setup();
    let code = match cli.command {
        Command::Run(args) => run(*args),
        Command::Certs(args) => certs(&args),
        Command::LocalCluster(args) => local_cluster(&args),
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn run(args: RunArgs) -> i32 {
    let config = match config::load(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("raftd: {error}");
            return error.exit_code();
        }
    };
    init_logging(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftd: cannot start the runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(raft_server::server::run(config)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("raftd: {error}");
            error.exit_code()
        }
    }
}

fn certs(args: &CertsArgs) -> i32 {
    let ca = args.out.join("ca.pem");
    if ca.exists() {
        // Replacing a CA would lock every member out of its cluster.
        eprintln!(
            "raftd: bad flag `--out`: {} already exists; remove it or choose another directory",
            ca.display()
        );
        return EXIT_CONFIG.into();
    }
    if args.nodes == 0 {
        eprintln!("raftd: bad flag `--nodes`: must be 1 or more");
        return EXIT_CONFIG.into();
    }
    match raft_transport::certs::write_dev_certs(&args.out, args.nodes, &args.hosts) {
        Ok(files) => {
            println!("{}", files.ca_cert.display());
            println!("{}", files.ca_key.display());
            for (_, cert, key) in &files.members {
                println!("{}", cert.display());
                println!("{}", key.display());
            }
            println!("{}", files.client.0.display());
            println!("{}", files.client.1.display());
            0
        }
        Err(error) => {
            eprintln!("raftd: cannot write certificates: {error}");
            1
        }
    }
}

fn local_cluster(args: &LocalClusterArgs) -> i32 {
    init_logging(args.log_format.unwrap_or_default(), "info");
    let cluster = match local_cluster::prepare(args) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("raftd: {error}");
            return error.exit_code();
        }
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(error) => {
            eprintln!("raftd: cannot find this executable: {error}");
            return 1;
        }
    };
    if args.init_only {
        // Commands alone on stdout, one per member, for scripts.
        eprintln!(
            "cluster files in {}; start each member with:",
            cluster.dir.display()
        );
        for member in &cluster.members {
            println!("{}", member.run_command(&exe, args));
        }
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftd: cannot start the runtime: {error}");
            return 1;
        }
    };
    match runtime.block_on(local_cluster::supervise(&cluster, &exe, args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("raftd: {error}");
            error.exit_code()
        }
    }
}

/// Logs go to stderr as text or JSON lines, filtered by `level` (validated by
/// `config::load`; an unparsable filter falls back to `info`).
fn init_logging(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if let Err(error) = result {
        eprintln!("raftd: cannot set up logging: {error}");
    }
}
