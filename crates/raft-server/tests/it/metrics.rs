//! `GET /metrics` of members that have served writes and reads: every name the contract
//! fixes is there, leader-only series leave with leadership, and the exposition passes
//! `promtool check metrics`. Without `promtool` on PATH the promtool half is skipped
//! with a notice, unless `RAFT_REQUIRE_PROMTOOL=1` (CI sets it) makes that a failure.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use raft_server::client::Consistency;
use raft_server::metrics::CONTRACT_METRIC_NAMES;

use crate::cluster::{PATIENCE, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_name_the_contract_and_pass_promtool() {
    let promtool = promtool_on_path();
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    // Writes and reads through every member, so that client, proposal and per-peer
    // series all have samples.
    for i in 0..3 {
        let key = format!("metrics-{i}");
        cluster.client(i).put(&key, "v").await.expect("put");
        cluster
            .client((i + 1) % 3)
            .get(&key, Consistency::Linearizable)
            .await
            .expect("get");
    }
    let text = cluster.metrics(leader).await;
    for name in CONTRACT_METRIC_NAMES {
        assert!(
            text.contains(&format!("\n# TYPE {name} ")),
            "{name} missing from the leader's /metrics:\n{text}"
        );
    }
    assert!(
        text.contains("raft_client_requests_total{code=\"200\",op=\"put\"}"),
        "the leader counted no successful put:\n{text}"
    );
    if promtool {
        promtool_check(&text, cluster.members[leader].id);
    }

    // After handing leadership on, the former leader keeps no stale match indexes.
    let target = (leader + 1) % 3;
    cluster
        .client(leader)
        .transfer_leader(Some(cluster.members[target].id))
        .await
        .expect("transfer");
    let deadline = Instant::now() + PATIENCE;
    let text = loop {
        let text = cluster.metrics(leader).await;
        if text.contains("\nraft_server_is_leader 0\n") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the former leader still says it leads:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for name in ["raft_peer_match_index", "raft_peer_lag_entries"] {
        assert!(
            !text.contains(&format!("\n{name}{{")),
            "a follower exposes {name}:\n{text}"
        );
    }
    if promtool {
        promtool_check(&text, cluster.members[leader].id);
    }
}

/// Whether `promtool` can be run. Without it, fails if `RAFT_REQUIRE_PROMTOOL=1`, else
/// says on stderr that the check is skipped.
fn promtool_on_path() -> bool {
    match Command::new("promtool").arg("--version").output() {
        Ok(_) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("RAFT_REQUIRE_PROMTOOL").as_deref() != Ok("1"),
                "RAFT_REQUIRE_PROMTOOL=1 but promtool is not on PATH \
                 (Debian: apt-get install prometheus)"
            );
            eprintln!(
                "NOTICE: promtool is not on PATH, so /metrics is not checked with \
                 `promtool check metrics` (Debian: apt-get install prometheus)"
            );
            false
        }
        Err(error) => panic!("cannot run promtool: {error}"),
    }
}

/// Pipes `text` into `promtool check metrics` and asserts it finds no problem.
fn promtool_check(text: &str, id: u64) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    // Writing everything, then dropping stdin, lets promtool see the end of its input.
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    assert!(
        output.status.success(),
        "promtool check metrics refused member {id}'s /metrics ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
