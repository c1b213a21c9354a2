//! Crashes, pauses and restarts of real members: no acknowledged write is lost, a
//! new leader takes over, a paused leader serves no stale read, SIGTERM hands off,
//! and a second raftd on a data directory is refused.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use raft_server::client::Consistency;

use crate::cluster::TestCluster;
use crate::netfault::UdpDrop;

async fn write_keys(cluster: &TestCluster, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let client = cluster.any_client();
    let mut written = BTreeMap::new();
    for i in 0..n {
        let (key, value) = (format!("{prefix}-{i}"), format!("v{i}"));
        client
            .put(&key, value.clone())
            .await
            .expect("acknowledged write");
        written.insert(key, value);
    }
    written
}

async fn assert_all_present(cluster: &TestCluster, i: usize, written: &BTreeMap<String, String>) {
    for (key, value) in written {
        let got = cluster
            .client(i)
            .get(key, Consistency::Linearizable)
            .await
            .expect("get")
            .expect("key present");
        assert_eq!(got.value, value.as_bytes(), "{key}");
    }
}

/// Writes `key` through a member other than `away` once the others have a leader
/// (retrying while they elect one).
async fn put_through_the_others(cluster: &TestCluster, away: usize, key: &str, value: &str) {
    let other = (away + 1) % cluster.members.len();
    for _ in 0..400 {
        if cluster
            .client(other)
            .put(key, value.to_string())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the majority never took the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    let before = write_keys(&cluster, "before", 20).await;
    cluster.kill9(leader);
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    assert_all_present(&cluster, new_leader, &before).await;
    let after = write_keys(&cluster, "after", 10).await;
    // The old leader rejoins and catches up.
    cluster.start(leader);
    cluster.wait_leader().await;
    for _ in 0..200 {
        let got = cluster
            .client(leader)
            .get("after-9", Consistency::Stale)
            .await;
        if matches!(got, Ok(Some(_))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_present(&cluster, leader, &before).await;
    assert_all_present(&cluster, leader, &after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_member_loses_no_acknowledged_write() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader().await;
    let written = write_keys(&cluster, "durable", 30).await;
    for i in 0..3 {
        cluster.kill9(i);
    }
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    assert_all_present(&cluster, leader, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_steps_down_and_serves_no_stale_read() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let old = cluster.wait_leader().await;
    cluster.any_client().put("k", "old").await.expect("put");
    cluster.signal(old, Signal::SIGSTOP);
    // The others elect a leader and take a newer write.
    put_through_the_others(&cluster, old, "k", "new").await;
    cluster.signal(old, Signal::SIGCONT);
    // From the moment it resumes, the old leader must never return the old value for
    // a linearizable read (either the new value or an error), and it must step down.
    // The deadline is generous: on a loaded machine reconnecting can take a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut reads = 0;
    loop {
        match cluster
            .client(old)
            .get("k", Consistency::Linearizable)
            .await
        {
            Ok(Some(value)) => assert_eq!(value.value, "new".as_bytes(), "stale linearizable read"),
            Ok(None) => panic!("the key vanished"),
            Err(_) => {}
        }
        reads += 1;
        let stepped_down = cluster
            .client(old)
            .status()
            .await
            .is_ok_and(|status| status.role != "leader");
        if stepped_down && reads >= 40 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the paused leader did not step down"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A leader frozen for several election timeouts (SIGSTOP, its peers unable to reach
/// it) must not trust a read lease when it wakes up: in the meantime the others
/// elected a new leader and took a newer write. Its ticks stopped while it was
/// frozen, but time did not; the lease is measured on the clock, so the first lease
/// read after the pause is refused or answered with the new value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_resumed_after_a_pause_serves_no_stale_lease_read() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let old = cluster.wait_leader().await;
    cluster.any_client().put("k", "old").await.expect("put");
    // Its peers' messages are dropped, so when it resumes nothing from the new term
    // reaches it before the client's read does.
    let Some(cut) = UdpDrop::to(cluster.members[old].peer_addr) else {
        return;
    };
    cluster.signal(old, Signal::SIGSTOP);
    let paused = std::time::Instant::now();
    put_through_the_others(&cluster, old, "k", "new").await;
    // At least three of the longest election timeouts (2 s here) frozen.
    let frozen = Duration::from_secs(7);
    if let Some(rest) = frozen.checked_sub(paused.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    cluster.signal(old, Signal::SIGCONT);
    let client = cluster.client(old);
    for _ in 0..8 {
        if let Ok(Some(value)) = client.get("k", Consistency::Lease).await {
            assert_eq!(
                value.value,
                "new".as_bytes(),
                "stale lease read after a pause"
            );
        }
    }
    drop(cut);
}

/// Flips a bit in the commit marker of the last write group in `data_dir`'s WAL (the
/// last 64 bytes written to the newest segment that holds any): the group was
/// complete on disk, so it may have been acknowledged.
fn damage_last_commit_marker(data_dir: &std::path::Path) {
    let mut segments: Vec<_> = std::fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segments.sort();
    for segment in segments.iter().rev() {
        let mut bytes = std::fs::read(segment).expect("read segment");
        let Some(last) = bytes.iter().rposition(|&b| b != 0) else {
            continue;
        };
        let end = last + 1;
        if end <= 64 + 512 {
            continue; // Only a header: a prepared segment not written yet.
        }
        bytes[end - 64 + 5] ^= 0x04;
        std::fs::write(segment, bytes).expect("write segment");
        return;
    }
    panic!("no written segment in {}", data_dir.display());
}

/// A member whose last write group reads back damaged although it was complete on
/// disk (the disk lost or flipped part of an acknowledged write) must not vote
/// until a leader has caught it up, and then rejoins fully: the flag is cleared
/// durably and no acknowledged write is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_damaged_last_write_rejoins_before_it_votes() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    let before = write_keys(&cluster, "before", 10).await;
    let follower = (leader + 1) % 3;
    cluster.signal(follower, Signal::SIGTERM);
    assert_eq!(cluster.wait_exit(follower).code(), Some(0));
    damage_last_commit_marker(&cluster.members[follower].data_dir);
    cluster.start(follower);
    // It comes up flagged; the leader's next appends catch it up.
    let after = write_keys(&cluster, "after", 5).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = cluster.client(follower).status().await;
        if status.is_ok_and(|s| !s.catching_up && s.leader_id.is_some()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the damaged member was never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flagged = "will not vote or campaign until a leader has caught it up";
    let log_path = cluster.members[follower].config.with_file_name("raftd.log");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(
        log.matches(flagged).count(),
        1,
        "the damaged tail was not reported"
    );
    assert_all_present(&cluster, follower, &before).await;
    assert_all_present(&cluster, follower, &after).await;
    // The flag was cleared durably: after another restart the member votes again.
    cluster.signal(follower, Signal::SIGTERM);
    assert_eq!(cluster.wait_exit(follower).code(), Some(0));
    cluster.start(follower);
    cluster.wait_ready().await;
    let status = cluster.client(follower).status().await.expect("status");
    assert!(!status.catching_up, "the flag survived being cleared");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(
        log.matches(flagged).count(),
        1,
        "flagged again after the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_leader_hands_off_and_exits_cleanly() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    let leader = cluster.wait_leader().await;
    let written = write_keys(&cluster, "handoff", 5).await;
    cluster.signal(leader, Signal::SIGTERM);
    let status = cluster.wait_exit(leader);
    assert_eq!(status.code(), Some(0), "clean stop exits 0");
    let new_leader = cluster.wait_leader().await;
    assert_ne!(new_leader, leader);
    assert_all_present(&cluster, new_leader, &written).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_raftd_on_the_same_data_dir_exits_3() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader().await;
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_raftd"))
        .args(["run", "--config"])
        .arg(&cluster.members[0].config)
        .args([
            "--listen-client",
            "127.0.0.1:0",
            "--listen-peer",
            "127.0.0.1:0",
        ])
        .output()
        .expect("run");
    assert_eq!(
        status.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn an_unknown_config_key_exits_2_naming_it() {
    let cluster = TestCluster::new(1);
    let config = &cluster.members[0].config;
    let mut text = std::fs::read_to_string(config).expect("read");
    text.insert_str(0, "no_such_key = 1\n");
    std::fs::write(config, text).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_raftd"))
        .args(["run", "--config"])
        .arg(config)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_wal_record_stops_the_member_with_exit_3_naming_file_and_offset() {
    let mut cluster = TestCluster::new(3);
    cluster.start_all();
    cluster.wait_leader().await;
    write_keys(&cluster, "corrupt", 30).await;
    // Stop member 2 cleanly, then flip one byte inside its first WAL record: damage
    // followed by later commit markers is corruption, never a torn tail.
    cluster.signal(1, Signal::SIGTERM);
    assert_eq!(cluster.wait_exit(1).code(), Some(0));
    let segment = cluster.members[1]
        .data_dir
        .join("wal")
        .join("00000000000000000001.seg");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes[60] ^= 0x40;
    std::fs::write(&segment, bytes).expect("write segment");
    cluster.start(1);
    let status = cluster.wait_exit(1);
    assert_eq!(status.code(), Some(3), "a corrupt data directory exits 3");
    let log = std::fs::read_to_string(cluster.members[1].config.with_file_name("raftd.log"))
        .expect("log");
    assert!(
        log.contains("00000000000000000001.seg"),
        "the message names the file: {log}"
    );
    assert!(
        log.contains("offset"),
        "the message names the offset: {log}"
    );
}
