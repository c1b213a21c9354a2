//! The systemd notify protocol (`sd_notify(3)`), spoken only when the service manager
//! set `NOTIFY_SOCKET`: `READY=1` once the member serves, `STATUS=` lines with role,
//! term and commit index, `WATCHDOG=1` pings from the driver loop, `STOPPING=1` on a
//! clean stop, and `EXTEND_TIMEOUT_USEC=` before slow start-up work. Keeps true: a
//! ping comes only from the loop that owns the node, so a stuck driver stops pinging
//! and the service manager restarts the member; nothing is sent per client write
//! (status lines are bounded to role, term or leader changes, and otherwise to one a
//! second); a failed send is logged and never stops raftd.

use std::time::{Duration, Instant};

use raft_core::{LogIndex, NodeId, Role, Status, Term};
use sd_notify::NotifyState;

/// The least time between two status lines that report only a new commit index.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Sends notifications to the service manager, or nothing when raftd was not started
/// by one.
#[derive(Clone, Debug)]
pub(crate) struct Notifier {
    /// Whether `NOTIFY_SOCKET` was set at start.
    enabled: bool,
    /// Half the watchdog timeout, when the service manager asked for pings.
    watchdog_interval: Option<Duration>,
    last_ping: Option<Instant>,
    /// What the last status line said, and when it was sent.
    last_status: Option<(Role, Term, Option<NodeId>, LogIndex, Instant)>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    /// The variables stay set: raftd starts no children that could inherit them.
    pub(crate) fn from_env() -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let mut watchdog_usec = 0;
        let watchdog_interval = (enabled
            && sd_notify::watchdog_enabled(false, &mut watchdog_usec)
            && watchdog_usec > 0)
            .then(|| Duration::from_micros(watchdog_usec / 2));
        Notifier {
            enabled,
            watchdog_interval,
            last_ping: None,
            last_status: None,
        }
    }

    /// Asks for `allowance` more start-up (or stop) time from now, before work whose
    /// length grows with the data (opening and replaying the WAL).
    pub(crate) fn extend_timeout(&self, allowance: Duration) {
        let usec = u32::try_from(allowance.as_micros()).unwrap_or(u32::MAX);
        self.send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    /// The member serves: the WAL is replayed, the transport and the HTTP API listen.
    pub(crate) fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// The member is stopping cleanly (leadership hand-off, in-flight writes).
    pub(crate) fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("stopping: handing off leadership, finishing writes"),
        ]);
    }

    /// Called on each driver tick: a watchdog ping when half the timeout has passed,
    /// and a status line when role, term or leader changed (or once a second for the
    /// commit index, when it moved). `status` is only read when something may be sent.
    pub(crate) fn on_tick(&mut self, status: impl FnOnce() -> Status) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if let Some(interval) = self.watchdog_interval
            && self
                .last_ping
                .is_none_or(|at| now.duration_since(at) >= interval)
        {
            self.last_ping = Some(now);
            self.send(&[NotifyState::Watchdog]);
        }
        let status = status();
        let due = match self.last_status {
            None => true,
            Some((role, term, leader, commit_index, at)) => {
                role != status.role
                    || term != status.term
                    || leader != status.leader
                    || (commit_index != status.commit_index
                        && now.duration_since(at) >= STATUS_INTERVAL)
            }
        };
        if due {
            self.last_status = Some((
                status.role,
                status.term,
                status.leader,
                status.commit_index,
                now,
            ));
            let line = status_line(&status);
            self.send(&[NotifyState::Status(&line)]);
        }
    }

    fn send(&self, states: &[NotifyState<'_>]) {
        if !self.enabled {
            return;
        }
        if let Err(error) = sd_notify::notify(false, states) {
            tracing::warn!(%error, "cannot notify the service manager");
        }
    }
}

/// `role leader, term 3, leader 1, commit index 42`: what `systemctl status` shows.
fn status_line(status: &Status) -> String {
    let role = match status.role {
        Role::Leader => "leader",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
        Role::Follower => "follower",
    };
    let leader = status
        .leader
        .map_or_else(|| "none".to_string(), |id| id.to_string());
    format!(
        "role {role}, term {}, leader {leader}, commit index {}",
        status.term, status.commit_index
    )
}
