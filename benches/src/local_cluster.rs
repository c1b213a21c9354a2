//! `raft-bench --local-cluster N`: runs `raftd local-cluster` as a child process
//! in a temporary directory, waits until every member answers `/readyz`, and
//! stops it with SIGTERM afterwards (SIGKILL only if it does not exit in time).
//!
//! The member URLs come from the configs `raftd local-cluster` writes
//! (`DIR/nodeI/raftd.toml`, keys `advertise_client` or `listen_client`), which
//! SPEC.md fixes, rather than from its human-oriented output.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use raft_server::client::{Client, Endpoint};
use tokio::process::{Child, Command};

/// How long the cluster may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a stopping cluster may take before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `raftd local-cluster`; call [`LocalCluster::stop`] when done.
#[derive(Debug)]
pub struct LocalCluster {
    child: Child,
    endpoints: Vec<Endpoint>,
    log: PathBuf,
    /// Holds the data, certs and log; removed on drop.
    _dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `nodes` members and waits until each is ready.
    pub async fn start(nodes: u32) -> anyhow::Result<Self> {
        let raftd = find_raftd()?;
        let dir = tempfile::Builder::new().prefix("raft-bench-").tempdir()?;
        let base_port = free_base_port(nodes)?;
        let log = dir.path().join("raftd.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(&raftd)
            .arg("local-cluster")
            .arg("--nodes")
            .arg(nodes.to_string())
            .arg("--dir")
            .arg(dir.path())
            .arg("--base-port")
            .arg(base_port.to_string())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", raftd.display()))?;
        let mut cluster = Self {
            child,
            endpoints: Vec::new(),
            log,
            _dir: dir,
        };
        match cluster.wait_ready(nodes).await {
            Ok(()) => Ok(cluster),
            Err(error) => {
                let log = cluster.log_tail();
                cluster.stop().await.ok();
                Err(error.context(format!(
                    "raftd local-cluster did not become ready; its log ends:\n{log}"
                )))
            }
        }
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Sends SIGTERM and waits for the cluster to exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let pid = Pid::from_raw(i32::try_from(pid).context("pid out of range")?);
            kill(pid, Signal::SIGTERM).context("cannot signal raftd")?;
        }
        match tokio::time::timeout(STOP_TIMEOUT, self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("raftd local-cluster exited with {status}");
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("raftd local-cluster did not stop within {STOP_TIMEOUT:?} of SIGTERM; killed")
            }
        }
    }

    async fn wait_ready(&mut self, nodes: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let dir = self._dir.path().to_owned();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("raftd local-cluster exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("timed out after {READY_TIMEOUT:?}");
            }
            if self.endpoints.is_empty() {
                if let Ok(endpoints) = (1..=nodes)
                    .map(|i| member_endpoint(&dir, i))
                    .collect::<anyhow::Result<Vec<_>>>()
                {
                    self.endpoints = endpoints;
                }
            } else {
                let client = Client::new(self.endpoints.clone())?;
                let mut ready = true;
                for endpoint in &self.endpoints {
                    ready &= client.readyz_at(endpoint).await.is_ok();
                }
                if ready {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Member `i`'s client URL from `DIR/nodeI/raftd.toml`.
fn member_endpoint(dir: &Path, i: u32) -> anyhow::Result<Endpoint> {
    let path = dir.join(format!("node{i}")).join("raftd.toml");
    let text = std::fs::read_to_string(&path)?;
    client_endpoint_of(&text).with_context(|| format!("{}", path.display()))
}

/// The client URL a member config advertises: `advertise_client`, else
/// `listen_client` with an unspecified host replaced by loopback.
pub fn client_endpoint_of(config: &str) -> anyhow::Result<Endpoint> {
    let table: toml::Table = config.parse()?;
    let addr = table
        .get("advertise_client")
        .or_else(|| table.get("listen_client"))
        .and_then(|value| value.as_str())
        .context("no advertise_client or listen_client")?;
    let addr = addr
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    Ok(addr.parse()?)
}

/// `raftd` next to this executable, else the first on PATH.
fn find_raftd() -> anyhow::Result<PathBuf> {
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("raftd")))
        && beside.is_file()
    {
        return Ok(beside);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("raftd"))
        .find(|path| path.is_file())
        .context("raftd not found next to raft-bench or on PATH")
}

/// A base port whose client ports (base+1..=base+N, TCP) and peer ports
/// (base+101..=base+100+N, UDP), laid out as in SPEC.md's example, are free now.
fn free_base_port(nodes: u32) -> anyhow::Result<u16> {
    let seed = std::process::id();
    for attempt in 0..64u32 {
        let base = 20_000 + (seed.wrapping_mul(7919).wrapping_add(attempt * 211) % 40_000) as u16;
        let free = (1..=nodes as u16).all(|i| {
            TcpListener::bind(("127.0.0.1", base + i)).is_ok()
                && UdpSocket::bind(("127.0.0.1", base + 100 + i)).is_ok()
        });
        if free {
            return Ok(base);
        }
    }
    bail!("no free port range found for {nodes} members")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_endpoint_from_config() {
        let listen = "id = 1\nlisten_client = \"0.0.0.0:7001\"\n[tls]\nca = \"x\"\n";
        assert_eq!(
            client_endpoint_of(listen).unwrap().as_str(),
            "http://127.0.0.1:7001"
        );
        let advertised = "listen_client = \"0.0.0.0:7001\"\nadvertise_client = \"10.0.0.1:7001\"\n";
        assert_eq!(
            client_endpoint_of(advertised).unwrap().as_str(),
            "http://10.0.0.1:7001"
        );
        assert!(client_endpoint_of("id = 1\n").is_err());
    }

    #[test]
    fn base_port_leaves_room() {
        let base = free_base_port(3).unwrap();
        assert!((20_000..60_000).contains(&base));
    }
}
