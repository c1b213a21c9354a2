//! Black-box tests of the `raft-bench` binary against the in-memory mock API server:
//! what it prints and what it writes for each workload and flag.

use std::time::Duration;

use raft_benches::load::key_for;
use raft_server::client::Client;
use raft_server::client::mock::MockServer;

/// Runs `raft-bench` against `server` with small settings plus `flags`; returns its
/// standard output, after asserting that it succeeded.
async fn raft_bench(server: &MockServer, flags: &[&str]) -> String {
    let endpoint = server.endpoint();
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_raft-bench"))
        .args(["--endpoints", endpoint.as_str()])
        .args(["--clients", "2", "--duration", "500ms"])
        .args(["--key-space", "20", "--value-size", "4"])
        .args(flags)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("raft-bench finishes")
        .expect("run raft-bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "raft-bench {flags:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("throughput"), "no summary:\n{stdout}");
    stdout
}

async fn stored_keys(server: &MockServer) -> usize {
    Client::new(vec![server.endpoint()])
        .expect("client")
        .range("", None)
        .await
        .expect("range")
        .kvs
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_are_preceded_by_a_preload_unless_turned_off() {
    for workload in ["get", "mixed:0.5"] {
        let server = MockServer::start().await;
        let stdout = raft_bench(&server, &["--workload", workload]).await;
        let first = stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("preloaded 20 keys with 2 clients"),
            "{workload}: the first line is {first:?}:\n{stdout}"
        );
        for index in 0..20 {
            let key = key_for(index);
            let value = server.value(std::str::from_utf8(&key).expect("ASCII key"));
            assert_eq!(
                value.as_deref(),
                Some(&b"abcd"[..]),
                "{workload}: key {index}"
            );
        }
    }

    // Without the preload, a get workload writes nothing; a put workload never preloads.
    let server = MockServer::start().await;
    let stdout = raft_bench(&server, &["--workload", "get", "--no-preload"]).await;
    assert!(!stdout.contains("preloaded"), "{stdout}");
    assert_eq!(stored_keys(&server).await, 0);
    let server = MockServer::start().await;
    let stdout = raft_bench(&server, &["--workload", "put"]).await;
    assert!(!stdout.contains("preloaded"), "{stdout}");
}
