//! Runs the deterministic cluster simulator over many seeds.
//!
//! ```text
//! cargo run --release -p raft-core --example simulate -- --seeds N [--start S]
//!     [--nodes 3|5|7] [--ticks T]
//! ```
//!
//! Without `--nodes`, seeds cycle through 3-, 5- and 7-member clusters. Every failing
//! seed is printed with the command that replays it; the last line is
//! `simulate: seeds=N failures=F steps=TOTAL`, and the exit status is 1 if F > 0.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::process::ExitCode;

use raft_core::Mutation;

struct Args {
    seeds: u64,
    start: u64,
    nodes: Option<usize>,
    ticks: u64,
    verbose: bool,
    mutation: Mutation,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        start: 0,
        nodes: None,
        ticks: 600,
        verbose: false,
        mutation: Mutation::None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let raw = it.next().ok_or(format!("{name} needs a value"))?;
            raw.parse()
                .map_err(|_| format!("{name}: not a number: {raw}"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = value("--seeds")?,
            "--start" => args.start = value("--start")?,
            "--ticks" => args.ticks = value("--ticks")?,
            "--nodes" => {
                let n = value("--nodes")? as usize;
                if ![3, 5, 7].contains(&n) {
                    return Err(format!("--nodes must be 3, 5 or 7, not {n}"));
                }
                args.nodes = Some(n);
            }
            "--verbose" => args.verbose = true,
            // Deliberately broken builds, to show the simulator catches them.
            "--mutation" => {
                args.mutation = match it.next().as_deref() {
                    Some("commit-prior-term") => Mutation::CommitPriorTermByCount,
                    Some("vote-without-log-check") => Mutation::VoteWithoutLogCheck,
                    Some("read-without-quorum") => Mutation::ReadWithoutQuorum,
                    Some("ignore-lost-entries") => Mutation::IgnoreLostEntries,
                    other => return Err(format!("unknown mutation {other:?}")),
                }
            }
            "-h" | "--help" => {
                return Err(
                    "usage: simulate --seeds N [--start S] [--nodes 3|5|7] [--ticks T] [--verbose]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("simulate: {message}");
            return ExitCode::from(2);
        }
    };
    let (mut failures, mut steps, mut committed, mut reads, mut changes, mut installs) =
        (0u64, 0u64, 0usize, 0u64, 0usize, 0u64);
    let (mut lease_reads, mut stalls, mut writes_lost, mut receive_crashes) =
        (0u64, 0u64, 0u64, 0u64);
    for seed in args.start..args.start + args.seeds {
        let nodes = args.nodes.unwrap_or([3, 5, 7][(seed % 3) as usize]);
        let report = sim::run_seed(nodes, seed, args.ticks, args.mutation);
        steps += report.steps;
        committed += report.committed;
        reads += report.reads_served;
        changes += report.membership_changes;
        installs += report.snapshots_installed;
        lease_reads += report.lease_reads_served;
        stalls += report.stalls;
        writes_lost += report.writes_lost;
        receive_crashes += report.snapshot_receive_crashes;
        if args.verbose {
            println!(
                "seed={seed} nodes={nodes} steps={} committed={}",
                report.steps, report.committed
            );
        }
        if !report.violations.is_empty() {
            failures += 1;
            println!("FAIL seed={seed} nodes={nodes}");
            for violation in &report.violations {
                println!("  {violation}");
            }
            println!(
                "  replay: cargo run --release -p raft-core --example simulate -- --seeds 1 --start {seed} --nodes {nodes} --ticks {}",
                args.ticks
            );
        }
    }
    println!(
        "work: committed_proposals={committed} reads_served={reads} membership_entries={changes} snapshots_installed={installs}"
    );
    println!(
        "faults: stalls={stalls} lease_reads_served={lease_reads} writes_lost_at_restart={writes_lost} crashes_between_snapshot_receive_and_install={receive_crashes}"
    );
    println!(
        "simulate: seeds={} failures={failures} steps={steps}",
        args.seeds
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
