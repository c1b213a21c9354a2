//! `raftctl`: the operator and data client of raftd. All logic lives in
//! `raft_server::client::cli`; this file parses, runs and picks the exit code.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use raft_server::client::cli::{Cli, run};

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2.
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raftctl: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match runtime.block_on(run(cli, &mut stdout, std::io::stdin())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raftctl: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}
