//! `raftd local-cluster`: the quickstart. Writes development certificates and one
//! config file per member under one directory, then runs every member as a child
//! process on 127.0.0.1 until Ctrl-C. Existing files are never overwritten, so a
//! second run with the same `--dir` resumes the same cluster and data.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use raft_transport::TransportError;
use raft_transport::certs::write_dev_certs;
use tokio::process::Command;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;

use crate::config::{
    ConfigError, ENV_PREFIX, InitialMember, LogFormat, RunArgs, ServerConfig, load_with_env,
};

/// Largest `--nodes`: above it, client ports (base + I) would run into peer ports
/// (base + 100 + I).
pub const MAX_NODES: u64 = 99;

/// The flags of `raftd local-cluster`.
#[derive(Clone, Debug, clap::Args)]
pub struct LocalClusterArgs {
    /// Number of members
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub nodes: u64,
    /// Directory for certs/, nodeI/raftd.toml and nodeI/data
    #[arg(long, default_value = "raftd-local", value_name = "DIR")]
    pub dir: PathBuf,
    /// Member I serves clients on port BASE+I and peers on port BASE+100+I
    #[arg(long, default_value_t = 7000, value_name = "BASE")]
    pub base_port: u16,
    /// Only write the files and print each member's `raftd run` command
    #[arg(long)]
    pub init_only: bool,
    /// Log format of the members (passed as --log-format)
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Log filter of the members (passed as --log-level)
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// The files of a local cluster, written or found on disk.
#[derive(Clone, Debug)]
pub struct LocalCluster {
    /// The cluster directory (absolute).
    pub dir: PathBuf,
    /// The certificate directory, `DIR/certs`.
    pub certs_dir: PathBuf,
    /// The members, in id order.
    pub members: Vec<LocalMember>,
}

/// One member of a local cluster.
#[derive(Clone, Debug)]
pub struct LocalMember {
    /// `DIR/nodeI/raftd.toml`.
    pub config_path: PathBuf,
    /// That file, loaded as `raftd run --config` would (without the environment).
    pub config: ServerConfig,
}

/// Why a local cluster could not be prepared or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalClusterError {
    /// A flag is out of range.
    #[error("bad flag `--{flag}`: {message}")]
    Flag {
        /// The flag, without dashes.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The directory holds files that do not fit the flags.
    #[error("{}: {message}", path.display())]
    Mismatch {
        /// The file that does not fit.
        path: PathBuf,
        /// How it does not fit, and what to do.
        message: String,
    },
    /// A member's config file does not load.
    #[error("{}: {source}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// The error, naming the key.
        source: ConfigError,
    },
    /// Writing the certificates failed.
    #[error("cannot write the development certificates: {0}")]
    Certs(#[source] TransportError),
    /// A file or process operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or executable.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

impl LocalClusterError {
    /// The process exit code: 2 for flags and configuration, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            LocalClusterError::Flag { .. }
            | LocalClusterError::Mismatch { .. }
            | LocalClusterError::Config { .. } => 2,
            LocalClusterError::Certs(_) | LocalClusterError::Io { .. } => 1,
        }
    }
}

impl LocalMember {
    /// The member's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// The member's client URL, `http://127.0.0.1:PORT`.
    pub fn client_url(&self) -> String {
        format!("http://{}", self.config.advertise_client)
    }

    /// The arguments of the member's `raftd run` (after the executable).
    pub fn run_args(&self, args: &LocalClusterArgs) -> Vec<OsString> {
        let mut run: Vec<OsString> = vec!["run".into(), "--config".into()];
        run.push(self.config_path.clone().into_os_string());
        if let Some(format) = args.log_format {
            run.extend(["--log-format".into(), format.to_string().into()]);
        }
        if let Some(level) = &args.log_level {
            run.extend(["--log-level".into(), level.into()]);
        }
        run
    }

    /// The member's command line for a shell, starting with `exe`.
    pub fn run_command(&self, exe: &Path, args: &LocalClusterArgs) -> String {
        std::iter::once(exe.as_os_str().to_owned())
            .chain(self.run_args(args))
            .map(|word| shell_quote(&word.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The member list of a local cluster: member I at `127.0.0.1:BASE+100+I` (peers) and
/// `127.0.0.1:BASE+I` (clients).
pub fn local_members(nodes: u64, base_port: u16) -> Result<Vec<InitialMember>, LocalClusterError> {
    if !(1..=MAX_NODES).contains(&nodes) {
        return Err(LocalClusterError::Flag {
            flag: "nodes",
            message: format!("{nodes} is not in 1..={MAX_NODES}"),
        });
    }
    let highest = u64::from(base_port) + 100 + nodes;
    if highest > u64::from(u16::MAX) {
        return Err(LocalClusterError::Flag {
            flag: "base-port",
            message: format!("{base_port} + 100 + {nodes} = {highest} is not a port"),
        });
    }
    let port = |offset: u64| u16::try_from(u64::from(base_port) + offset).unwrap_or(u16::MAX);
    Ok((1..=nodes)
        .map(|id| InitialMember {
            id,
            peer_addr: ([127, 0, 0, 1], port(100 + id)).into(),
            client_addr: ([127, 0, 0, 1], port(id)).into(),
        })
        .collect())
}

/// The config file of member `id` of `members`: relative paths, so the directory
/// can move.
pub fn member_config_toml(id: u64, members: &[InitialMember]) -> String {
    let own = members.iter().find(|member| member.id == id);
    let (peer, client) = own.map_or((String::new(), String::new()), |member| {
        (member.peer_addr.to_string(), member.client_addr.to_string())
    });
    let mut text = format!(
        "# Member {id} of a local development cluster, written by `raftd local-cluster`.\n\
         # Relative paths are resolved against this file's directory.\n\
         id = {id}\n\
         data_dir = \"data\"\n\
         listen_peer = \"{peer}\"\n\
         listen_client = \"{client}\"\n"
    );
    for member in members {
        text.push_str(&format!(
            "\n[[initial_members]]\nid = {}\npeer_addr = \"{}\"\nclient_addr = \"{}\"\n",
            member.id, member.peer_addr, member.client_addr
        ));
    }
    text.push_str(&format!(
        "\n[tls]\nca = \"../certs/ca.pem\"\ncert = \"../certs/node{id}.pem\"\n\
         key = \"../certs/node{id}-key.pem\"\n"
    ));
    text
}

/// Writes what is missing under `args.dir` (certificates, member configs) and loads
/// every member's config. Never overwrites a file.
pub fn prepare(args: &LocalClusterArgs) -> Result<LocalCluster, LocalClusterError> {
    let members = local_members(args.nodes, args.base_port)?;
    let dir = std::path::absolute(&args.dir).map_err(|source| LocalClusterError::Io {
        path: args.dir.clone(),
        source,
    })?;
    let certs_dir = dir.join("certs");
    ensure_certs(&certs_dir, args.nodes)?;
    let mut loaded = Vec::new();
    for member in &members {
        let member_dir = dir.join(format!("node{}", member.id));
        create_dir(&member_dir)?;
        let config_path = member_dir.join("raftd.toml");
        write_if_missing(&config_path, &member_config_toml(member.id, &members))?;
        let run = RunArgs {
            config: Some(config_path.clone()),
            ..RunArgs::default()
        };
        let config = load_with_env(run, |_| None).map_err(|source| LocalClusterError::Config {
            path: config_path.clone(),
            source,
        })?;
        let ids: Vec<u64> = config.initial_members.iter().map(|m| m.id).collect();
        let expected: Vec<u64> = members.iter().map(|m| m.id).collect();
        if config.id != member.id || ids != expected {
            return Err(LocalClusterError::Mismatch {
                path: config_path,
                message: format!(
                    "member {} of initial members {ids:?} does not fit --nodes {}; run with \
                     the --nodes this directory was created with, or use a new --dir",
                    config.id, args.nodes
                ),
            });
        }
        loaded.push(LocalMember {
            config_path,
            config,
        });
    }
    Ok(LocalCluster {
        dir,
        certs_dir,
        members: loaded,
    })
}

/// Runs every member of `cluster` as a child `exe run --config ...`, prints their
/// client URLs, and waits. On SIGINT or SIGTERM it sends SIGTERM to every member and
/// waits for them (a second signal sends SIGKILL). Returns the exit code: 0 when
/// every member stopped cleanly, 1 otherwise.
pub async fn supervise(
    cluster: &LocalCluster,
    exe: &Path,
    args: &LocalClusterArgs,
) -> Result<i32, LocalClusterError> {
    let signal_error = |source| LocalClusterError::Io {
        path: PathBuf::from("signal handler"),
        source,
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut running: Vec<(u64, nix::unistd::Pid)> = Vec::new();
    let mut children = JoinSet::new();
    for member in &cluster.members {
        let mut command = Command::new(exe);
        command.args(member.run_args(args));
        // Each member follows its own file, not this shell's RAFTD_* settings.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with(ENV_PREFIX) {
                command.env_remove(name);
            }
        }
        // Own process group: a terminal's Ctrl-C reaches only this process, which
        // then stops the members one signal each.
        command.process_group(0);
        let mut child = command.spawn().map_err(|source| LocalClusterError::Io {
            path: exe.to_path_buf(),
            source,
        })?;
        let id = member.id();
        if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
            running.push((id, nix::unistd::Pid::from_raw(pid)));
        }
        children.spawn(async move { (id, child.wait().await) });
        println!(
            "member {id}: {} (config {})",
            member.client_url(),
            member.config_path.display()
        );
    }
    println!(
        "{} members running; Ctrl-C stops them",
        cluster.members.len()
    );

    let mut clean = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            exited = children.join_next() => {
                let (id, status) = match exited {
                    None => break,
                    Some(Ok(exited)) => exited,
                    // The waiting task cannot panic; count it as an unclean stop.
                    Some(Err(_)) => {
                        clean = false;
                        continue;
                    }
                };
                running.retain(|(member, _)| *member != id);
                clean &= report_exit(id, status, stopping);
            }
            _ = interrupt.recv() => stopping = stop(&running, stopping),
            _ = terminate.recv() => stopping = stop(&running, stopping),
        }
    }
    Ok(if clean && stopping { 0 } else { 1 })
}

/// Signals every running member: SIGTERM the first time, SIGKILL after. Returns true
/// (the cluster is stopping).
fn stop(running: &[(u64, nix::unistd::Pid)], already_stopping: bool) -> bool {
    use nix::sys::signal::{Signal, kill};
    let signal = if already_stopping {
        Signal::SIGKILL
    } else {
        Signal::SIGTERM
    };
    eprintln!("stopping {} members ({signal})", running.len());
    for (id, pid) in running {
        if let Err(error) = kill(*pid, signal) {
            eprintln!("member {id}: cannot send {signal}: {error}");
        }
    }
    true
}

/// Prints how a member exited; true if that was a clean stop we asked for.
fn report_exit(id: u64, status: io::Result<ExitStatus>, stopping: bool) -> bool {
    match status {
        Ok(status) if status.success() && stopping => {
            eprintln!("member {id} stopped");
            true
        }
        Ok(status) => {
            eprintln!("member {id} exited: {status}");
            false
        }
        Err(error) => {
            eprintln!("member {id}: cannot wait for it: {error}");
            false
        }
    }
}

fn ensure_certs(certs_dir: &Path, nodes: u64) -> Result<(), LocalClusterError> {
    if !certs_dir.join("ca.pem").exists() {
        write_dev_certs(certs_dir, nodes, &[]).map_err(LocalClusterError::Certs)?;
        return Ok(());
    }
    // A CA exists: keep it (members already trust it) and insist on every pair.
    for id in 1..=nodes {
        for name in [format!("node{id}.pem"), format!("node{id}-key.pem")] {
            let path = certs_dir.join(name);
            if !path.exists() {
                return Err(LocalClusterError::Mismatch {
                    path,
                    message: "missing, but the CA beside it exists; the directory was created \
                              with fewer --nodes: use that number or a new --dir"
                        .to_owned(),
                });
            }
        }
    }
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), LocalClusterError> {
    std::fs::create_dir_all(path).map_err(|source| LocalClusterError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_if_missing(path: &Path, contents: &str) -> Result<(), LocalClusterError> {
    use std::io::Write;
    let error = |source| LocalClusterError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(existing) if existing.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(source) => return Err(error(source)),
    };
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)
}

fn shell_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dir: &Path) -> LocalClusterArgs {
        LocalClusterArgs {
            nodes: 3,
            dir: dir.to_path_buf(),
            base_port: 7000,
            init_only: true,
            log_format: None,
            log_level: None,
        }
    }

    #[test]
    fn init_writes_certs_and_loadable_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let cluster = prepare(&args(tmp.path())).unwrap();
        let certs = tmp.path().join("certs");
        for name in ["ca.pem", "ca-key.pem", "client.pem", "client-key.pem"] {
            assert!(certs.join(name).is_file(), "{name}");
        }
        assert_eq!(cluster.members.len(), 3);
        for (at, member) in cluster.members.iter().enumerate() {
            let i = at as u64 + 1;
            let node_dir = std::path::absolute(tmp.path().join(format!("node{i}"))).unwrap();
            assert_eq!(member.config_path, node_dir.join("raftd.toml"));
            // What `raftd run --config` would load.
            let run = RunArgs {
                config: Some(member.config_path.clone()),
                ..RunArgs::default()
            };
            let config = load_with_env(run, |_| None).unwrap();
            assert_eq!(config, member.config);
            assert_eq!(config.id, i);
            assert_eq!(
                config.listen_client.to_string(),
                format!("127.0.0.1:{}", 7000 + i)
            );
            assert_eq!(
                config.listen_peer.to_string(),
                format!("127.0.0.1:{}", 7100 + i)
            );
            assert_eq!(config.data_dir, node_dir.join("data"));
            assert_eq!(config.initial_members.len(), 3);
            assert!(config.tls.ca.is_file());
            assert!(config.tls.cert.is_file());
            assert!(config.tls.key.is_file());
            assert!(config.tls.cert.ends_with(format!("node{i}.pem")));
            assert_eq!(
                member.client_url(),
                format!("http://127.0.0.1:{}", 7000 + i)
            );
            let command = member.run_command(Path::new("/bin/raftd"), &args(tmp.path()));
            assert_eq!(
                command,
                format!("/bin/raftd run --config {}", member.config_path.display())
            );
        }
    }

    #[test]
    fn second_run_resumes_without_overwriting() {
        let tmp = tempfile::tempdir().unwrap();
        prepare(&args(tmp.path())).unwrap();
        let ca = std::fs::read(tmp.path().join("certs/ca.pem")).unwrap();
        let config_path = tmp.path().join("node2/raftd.toml");
        let edited = std::fs::read_to_string(&config_path).unwrap().replacen(
            "id = 2\n",
            "id = 2\nlog_level = \"debug\"\n",
            1,
        );
        std::fs::write(&config_path, &edited).unwrap();

        let cluster = prepare(&args(tmp.path())).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("certs/ca.pem")).unwrap(), ca);
        assert_eq!(std::fs::read_to_string(&config_path).unwrap(), edited);
        assert_eq!(cluster.members[1].config.log_level, "debug");

        let mut more = args(tmp.path());
        more.nodes = 4;
        let error = prepare(&more).unwrap_err();
        assert!(
            matches!(error, LocalClusterError::Mismatch { .. }),
            "{error}"
        );
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn ports_and_flag_ranges() {
        let members = local_members(2, 9000).unwrap();
        assert_eq!(members[1].client_addr.to_string(), "127.0.0.1:9002");
        assert_eq!(members[1].peer_addr.to_string(), "127.0.0.1:9102");
        assert!(matches!(
            local_members(0, 7000),
            Err(LocalClusterError::Flag { flag: "nodes", .. })
        ));
        assert!(matches!(
            local_members(3, 65500),
            Err(LocalClusterError::Flag {
                flag: "base-port",
                ..
            })
        ));
    }

    #[test]
    fn commands_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/a b/raftd"), "'/a b/raftd'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(
            shell_quote("--log-level=info,raft=debug"),
            "--log-level=info,raft=debug"
        );
    }
}
