//! A test cluster of real `raftd` processes: generated certificates and configs in a
//! temporary directory, free ports on 127.0.0.1, start / kill -9 / SIGTERM /
//! restart by member, and helpers to find the leader and wait for readiness. Every
//! wait has a generous bound that only guards against hangs.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use raft_server::client::{Client, Endpoint};

pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

pub(crate) struct Member {
    pub(crate) id: u64,
    pub(crate) client_addr: SocketAddr,
    pub(crate) peer_addr: SocketAddr,
    pub(crate) config: PathBuf,
    pub(crate) data_dir: PathBuf,
    child: Option<Child>,
}

pub(crate) struct TestCluster {
    /// Holds the certificates, configs and data directories until dropped.
    dir: tempfile::TempDir,
    pub(crate) members: Vec<Member>,
    /// Environment variables every member is started with.
    env: Vec<(String, String)>,
}

pub(crate) fn free_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn free_udp_port() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr")
}

impl TestCluster {
    /// Writes certificates and configs for `n` members (not started).
    pub(crate) fn new(n: u64) -> TestCluster {
        TestCluster::with_spares(n, 0)
    }

    /// `voters` initial members plus `spares` members that are configured (with the
    /// same initial members) but not part of the cluster until added.
    pub(crate) fn with_spares(voters: u64, spares: u64) -> TestCluster {
        TestCluster::with_options(voters, spares, "")
    }

    /// Like [`TestCluster::with_spares`], with `extra` TOML lines in every config.
    pub(crate) fn with_options(voters: u64, spares: u64, extra: &str) -> TestCluster {
        let n = voters + spares;
        let dir = tempfile::tempdir().expect("tempdir");
        let certs = dir.path().join("certs");
        raft_transport::certs::write_dev_certs(&certs, n, &[]).expect("certs");
        let members: Vec<Member> = (1..=n)
            .map(|id| {
                let home = dir.path().join(format!("node{id}"));
                std::fs::create_dir_all(&home).expect("mkdir");
                Member {
                    id,
                    client_addr: free_tcp_port(),
                    peer_addr: free_udp_port(),
                    config: home.join("raftd.toml"),
                    data_dir: home.join("data"),
                    child: None,
                }
            })
            .collect();
        let mut initial = String::new();
        for m in members.iter().filter(|m| m.id <= voters) {
            initial.push_str(&format!(
                "[[initial_members]]\nid = {}\npeer_addr = \"{}\"\nclient_addr = \"{}\"\n",
                m.id, m.peer_addr, m.client_addr
            ));
        }
        for m in &members {
            let text = format!(
                "id = {id}\ndata_dir = \"{data}\"\nlisten_peer = \"{peer}\"\nlisten_client = \"{client}\"\n\
                 tick_interval_ms = 50\nelection_timeout_ticks = 20\nrequest_timeout_ms = 5000\n\
                 shutdown_transfer_timeout_ms = 3000\n{extra}\n{initial}\n[tls]\nca = \"{certs}/ca.pem\"\n\
                 cert = \"{certs}/node{id}.pem\"\nkey = \"{certs}/node{id}-key.pem\"\n",
                id = m.id,
                data = m.data_dir.display(),
                peer = m.peer_addr,
                client = m.client_addr,
                certs = certs.display(),
            );
            std::fs::write(&m.config, text).expect("write config");
        }
        TestCluster {
            dir,
            members,
            env: Vec::new(),
        }
    }

    /// The cluster's temporary directory (certificates in `certs/`, one `nodeI/` per
    /// member); files put here are removed with the cluster.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Points member `i`'s `[tls]` section (the last of its config) at the CA, member
    /// certificate and key in `certs`, named as `raftd certs` names them. Takes effect
    /// at the member's next start.
    pub(crate) fn use_certs(&self, i: usize, certs: &Path) {
        let member = &self.members[i];
        let text = std::fs::read_to_string(&member.config).expect("read config");
        let (head, _) = text.split_once("\n[tls]\n").expect("a [tls] section");
        let text = format!(
            "{head}\n[tls]\nca = \"{certs}/ca.pem\"\ncert = \"{certs}/node{id}.pem\"\n\
             key = \"{certs}/node{id}-key.pem\"\n",
            certs = certs.display(),
            id = member.id,
        );
        std::fs::write(&member.config, text).expect("write config");
    }

    /// Starts every member.
    pub(crate) fn start_all(&mut self) {
        for i in 0..self.members.len() {
            self.start(i);
        }
    }

    /// Starts every member from now on with `key=value` in its environment.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_string(), value.to_string()));
    }

    /// Starts member index `i` (0-based) as a child process.
    pub(crate) fn start(&mut self, i: usize) {
        self.start_with_env(i, &[]);
    }

    /// Starts member `i` with `env` added to its environment. With `WATCHDOG_USEC`
    /// among them, `WATCHDOG_PID` is set to the member's own pid, as systemd does
    /// (a shell sets it and execs raftd, which keeps the pid).
    pub(crate) fn start_with_env(&mut self, i: usize, env: &[(&str, &str)]) {
        let member = &mut self.members[i];
        assert!(
            member.child.is_none(),
            "member {} already running",
            member.id
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(member.config.with_file_name("raftd.log"))
            .expect("log file");
        let mut command = if env.iter().any(|(key, _)| *key == "WATCHDOG_USEC") {
            let mut shell = Command::new("sh");
            shell.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""]);
            shell.arg(env!("CARGO_BIN_EXE_raftd"));
            shell
        } else {
            Command::new(env!("CARGO_BIN_EXE_raftd"))
        };
        let child = command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().copied())
            .args(["run", "--config"])
            .arg(&member.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn raftd");
        member.child = Some(child);
    }

    /// SIGKILLs member `i`.
    pub(crate) fn kill9(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal to member `i` (SIGTERM, SIGSTOP, SIGCONT).
    pub(crate) fn signal(&self, i: usize, signal: nix::sys::signal::Signal) {
        let child = self.members[i].child.as_ref().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal");
    }

    /// Waits for member `i` to exit and returns its status.
    pub(crate) fn wait_exit(&mut self, i: usize) -> ExitStatus {
        let mut child = self.members[i].child.take().expect("running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "member {} did not exit",
                self.members[i].id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn endpoint(&self, i: usize) -> Endpoint {
        format!("http://{}", self.members[i].client_addr)
            .parse()
            .expect("endpoint")
    }

    /// A client talking to member `i` only.
    pub(crate) fn client(&self, i: usize) -> Client {
        Client::new(vec![self.endpoint(i)]).expect("client")
    }

    /// A client with every running member as an endpoint.
    pub(crate) fn any_client(&self) -> Client {
        let endpoints = (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.endpoint(i))
            .collect();
        Client::new(endpoints).expect("client")
    }

    pub(crate) fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Waits until every running member knows the same leader, and returns its index.
    pub(crate) async fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut leaders = Vec::new();
            for i in (0..self.members.len()).filter(|&i| self.is_running(i)) {
                match self.client(i).status().await {
                    Ok(status) => leaders.push((status.leader_id, status.role == "leader", i)),
                    Err(_) => leaders.push((None, false, i)),
                }
            }
            let first = leaders.first().and_then(|l| l.0);
            if let Some(id) = first
                && leaders.iter().all(|l| l.0 == first)
                && let Some(i) = self.members.iter().position(|m| m.id == id)
                && self.is_running(i)
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One HTTP request to member `i`'s client address, without the client's retries
    /// or leader-following: the status and the body as text.
    pub(crate) async fn raw(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> (u16, String) {
        use http_body_util::{BodyExt, Full};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.members[i].client_addr))
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("request");
        let response = client.request(request).await.expect("response");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Member `i`'s `GET /metrics` exposition.
    pub(crate) async fn metrics(&self, i: usize) -> String {
        let (status, text) = self.raw(i, "GET", "/metrics", Vec::new()).await;
        assert_eq!(status, 200, "GET /metrics on member {}", self.members[i].id);
        text
    }

    /// The last lines member `i` logged, for failure messages.
    pub(crate) fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.members[i].config.with_file_name("raftd.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Waits until every running member agrees on a leader (and so can serve).
    pub(crate) async fn wait_ready(&self) {
        self.wait_leader().await;
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}
