//! The systemd notify protocol, seen from the service manager's side: a Unix
//! datagram socket per member stands in for systemd's `NOTIFY_SOCKET`, and the test
//! checks that `READY=1` comes only once the HTTP API answers, that watchdog pings
//! come only when `WATCHDOG_USEC` asks for them, that status lines name role, term
//! and commit index, and that SIGTERM announces `STOPPING=1`.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::cluster::{PATIENCE, TestCluster};

/// One member's notify socket and every line received on it so far.
struct Manager {
    socket: UnixDatagram,
    lines: Vec<String>,
}

impl Manager {
    fn bind(path: &std::path::Path) -> Manager {
        let socket = UnixDatagram::bind(path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        Manager {
            socket,
            lines: Vec::new(),
        }
    }

    /// Reads whatever arrived, without waiting longer than the read timeout.
    fn drain(&mut self) {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = self.socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            self.lines.extend(text.lines().map(str::to_string));
        }
    }

    fn count(&self, line: &str) -> usize {
        self.lines.iter().filter(|l| *l == line).count()
    }

    /// Waits until `done` holds for the lines received.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Manager) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.drain();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never received {what}; got {:?}",
                self.lines
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftd_tells_systemd_when_it_is_ready_alive_and_stopping() {
    let mut cluster = TestCluster::new(3);
    let mut managers: Vec<Manager> = (0..3)
        .map(|i| Manager::bind(&cluster.dir().join(format!("notify{i}.sock"))))
        .collect();
    for i in 0..3 {
        let socket = cluster.dir().join(format!("notify{i}.sock"));
        let socket = socket.to_str().expect("utf-8 path").to_string();
        let mut env = vec![("NOTIFY_SOCKET", socket.as_str())];
        if i == 0 {
            // 200 ms: a ping at least every 100 ms.
            env.push(("WATCHDOG_USEC", "200000"));
        }
        cluster.start_with_env(i, &env);
    }
    for (i, manager) in managers.iter_mut().enumerate() {
        manager.wait_for("READY=1", |m| m.count("READY=1") == 1);
        // Ready means serving: the HTTP API answers at once.
        cluster
            .client(i)
            .status()
            .await
            .expect("the HTTP API answers once READY=1 was sent");
    }
    cluster.wait_leader().await;

    managers[0].wait_for("several WATCHDOG=1 pings", |m| m.count("WATCHDOG=1") >= 3);
    managers[0].wait_for("a status line naming a leader", |m| {
        m.lines.iter().any(|l| {
            l.starts_with("STATUS=role ")
                && l.contains(", term ")
                && l.contains(", commit index ")
                && !l.contains("leader none")
        })
    });
    managers[1].drain();
    assert_eq!(
        managers[1].count("WATCHDOG=1"),
        0,
        "pings without WATCHDOG_USEC"
    );

    cluster.signal(0, Signal::SIGTERM);
    managers[0].wait_for("STOPPING=1", |m| m.count("STOPPING=1") == 1);
    assert_eq!(cluster.wait_exit(0).code(), Some(0));
    let stopping = managers[0]
        .lines
        .iter()
        .position(|l| l == "STOPPING=1")
        .expect("STOPPING=1");
    let ready = managers[0]
        .lines
        .iter()
        .position(|l| l == "READY=1")
        .expect("READY=1");
    assert!(ready < stopping, "{:?}", managers[0].lines);
}
