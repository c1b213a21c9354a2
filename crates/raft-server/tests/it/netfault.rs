//! Network faults for the black-box tests: silently dropping the UDP (QUIC) traffic
//! that reaches one member's peer port, with an iptables rule on the loopback
//! interface that is removed again when the guard is dropped (also on a panic).
//!
//! iptables needs root. Without it the tests that need a cut print a notice and
//! skip, unless `RAFT_REQUIRE_IPTABLES=1` (CI sets it) makes that a failure.

use std::net::SocketAddr;
use std::process::Command;

/// While alive, every UDP datagram addressed to `port` on 127.0.0.1 is dropped on
/// arrival: the member on that port hears nothing from its peers, and its peers
/// hear no answers from it (QUIC needs both directions).
pub(crate) struct UdpDrop {
    rule: Vec<String>,
}

impl UdpDrop {
    /// Starts dropping datagrams to `addr`'s port, or `None` (after a notice) when
    /// iptables cannot be used here and `RAFT_REQUIRE_IPTABLES` is not set.
    pub(crate) fn to(addr: SocketAddr) -> Option<UdpDrop> {
        let rule: Vec<String> = [
            "INPUT",
            "-i",
            "lo",
            "-p",
            "udp",
            "--dport",
            &addr.port().to_string(),
            "-j",
            "DROP",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let added = Command::new("iptables")
            .args(["-w", "-I"])
            .args(&rule)
            .output();
        match added {
            Ok(output) if output.status.success() => Some(UdpDrop { rule }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                assert!(
                    std::env::var("RAFT_REQUIRE_IPTABLES").as_deref() != Ok("1"),
                    "RAFT_REQUIRE_IPTABLES=1 but iptables failed: {why}"
                );
                eprintln!("notice: iptables unavailable ({why}); skipping a network-cut test");
                None
            }
        }
    }
}

impl Drop for UdpDrop {
    fn drop(&mut self) {
        let _ = Command::new("iptables")
            .args(["-w", "-D"])
            .args(&self.rule)
            .status();
    }
}
