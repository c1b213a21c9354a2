//! `raft-bench`: the load generator for a raftd cluster (SPEC.md). The logic
//! lives in `raft_benches::load` and `raft_benches::local_cluster`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use raft_benches::load::{Args, Plan, preload, run, write_json};
use raft_benches::local_cluster::LocalCluster;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2.
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("raft-bench: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("raft-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> anyhow::Result<()> {
    let cluster = match args.local_cluster {
        Some(nodes) => {
            let cluster = LocalCluster::start(nodes).await?;
            let urls: Vec<&str> = cluster.endpoints().iter().map(|e| e.as_str()).collect();
            eprintln!("local cluster ready: {}", urls.join(","));
            Some(cluster)
        }
        None => None,
    };
    let plan = Plan {
        endpoints: cluster
            .as_ref()
            .map_or_else(|| args.endpoints.clone(), |c| c.endpoints().to_vec()),
        clients: args.clients,
        duration: args.duration,
        value_size: args.value_size,
        key_space: args.key_space,
        workload: args.workload,
        rate: args.rate,
        preload: !args.no_preload,
        http2_connections: args.http2.then_some(args.connections),
    };
    let result = async {
        // Gets should find keys: write the key space first, outside the measurement.
        if plan.needs_preload() {
            println!("{}", preload(&plan).await?.line());
        }
        run(&plan, |progress| println!("{}", progress.line())).await
    }
    .await;
    // Stop the cluster whether or not the run succeeded.
    let stopped = match cluster {
        Some(cluster) => cluster.stop().await,
        None => Ok(()),
    };
    let report = result?;
    print!("{}", report.summary());
    if let Some(path) = &args.json {
        write_json(&report, path)?;
    }
    stopped
}
