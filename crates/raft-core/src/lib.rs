//! The Raft consensus protocol as a deterministic, sans-IO state machine.
//!
//! A [`Node`] is one member's protocol state. It performs no I/O, reads no clock and
//! draws randomness only from the seed in its [`Config`]; the same inputs always give
//! the same outputs, which is what lets the simulator replay a failing seed exactly.
//!
//! # Inputs and outputs
//!
//! The driver feeds in a few verbs: [`Node::tick`] (time), [`Node::step`] (a message
//! from a peer), [`Node::propose`] (a command, on the leader), [`Node::read_index`]
//! (a linearizable read), and the acknowledgements [`Node::on_persisted`] and
//! [`Node::on_applied`].
//!
//! Time comes in two forms. Ticks pace the protocol's timers (elections, heartbeats,
//! check-quorum); they stop while the process is paused. The driver's monotonic
//! clock, passed to [`Node::tick`] and [`Node::read_index`] as a [`Monotonic`]
//! reading, measures what safety depends on: lease reads. The node never reads a
//! clock itself. Everything the
//! node wants done comes back as one [`Ready`], split by consumer:
//!
//! - [`Ready::messages`]: send now. A leader sends appends before its own copy is
//!   durable; its copy counts toward a quorum once acknowledged.
//! - [`Ready::persist`]: write the hard state and entries durably (atomically, in the
//!   order handed out), *then* send [`Persist::messages`] (votes and append answers,
//!   which promise durability) and call [`Node::on_persisted`] with [`Persist::ack`].
//! - [`Ready::committed_entries`]: apply in order, then call [`Node::on_applied`].
//! - [`Ready::proposal_outcomes`]: each proposal ends exactly once, committed or dropped.
//!
//! The stable log is read back through the [`LogStore`] trait; it must return every
//! entry the node was told is durable.
//!
//! # Snapshots
//!
//! The application snapshots its state machine at an applied index whenever it likes,
//! makes the snapshot durable, and then compacts the store (the log through that
//! index, see [`MemoryLogStore::compact`]); the node notices through
//! [`LogStore::first_index`] and [`LogStore::snapshot`]. A follower that needs
//! compacted entries is sent [`MessageBody::InstallSnapshot`]: the driver streams the
//! snapshot data beside it and steps the message into the follower once the data has
//! arrived; the follower's next [`Persist::snapshot`] asks to install it.
//!
//! # The driver loop
//!
//! This is the one legal call order. Persist batches may be written asynchronously
//! (the node keeps going while a write is in flight) as long as they complete in the
//! order they were handed out.
//!
//! ```
//! use raft_core::{
//!     Config, LogStore, MemoryLogStore, Membership, Monotonic, Node, NodeId, ReadMode, Role,
//! };
//!
//! // A single-member cluster on an in-memory store.
//! let store = MemoryLogStore::new(Membership::with_voters([NodeId(1)]));
//! let mut node = Node::new(Config::new(NodeId(1)), store.clone())?;
//! let (mut applied, mut proposed, mut reads) = (Vec::new(), false, Vec::new());
//! for tick in 0..100u64 {
//!     // A timer fired; the driver reads its monotonic clock (here: 100 ms a tick).
//!     let now = Monotonic::from_micros(tick * 100_000);
//!     node.tick(now)?;
//!     if node.role() == Role::Leader && tick == 50 {
//!         node.read_index(7, ReadMode::Lease, now)?; // a client wants to read
//!     }
//!     if node.role() == Role::Leader && !proposed {
//!         node.propose("x=1".into())?;               // a client asked
//!         proposed = true;
//!     }
//!     while node.has_ready() {
//!         let ready = node.ready()?;
//!         for message in ready.messages {
//!             let _ = message;                       // transport.send(message)
//!         }
//!         if let Some(persist) = ready.persist {
//!             if let Some(snapshot) = &persist.snapshot {
//!                 store.install_snapshot(snapshot);  // and restore the state machine
//!             }                                       // from the data that came with it
//!             if let Some(hard_state) = persist.hard_state {
//!                 store.set_hard_state(hard_state);   // durably, with the entries
//!             }
//!             store.append(&persist.entries);
//!             for message in persist.messages {
//!                 let _ = message;                   // transport.send(message), only now
//!             }
//!             node.on_persisted(persist.ack)?;
//!         }
//!         if let Some(last) = ready.committed_entries.last() {
//!             applied.extend(ready.committed_entries.iter().cloned()); // state machine
//!             node.on_applied(last.index);
//!         }
//!         // Serve each read once the state machine has applied its index.
//!         reads.extend(ready.read_states);
//!     }
//! }
//! assert_eq!(node.role(), Role::Leader);
//! assert_eq!(applied.len(), 2); // the leader's empty entry, then the command
//! assert_eq!(reads.len(), 1);
//! assert_eq!(reads[0].index.map(|i| i.0), Some(2));
//! assert_eq!(store.last_index().0, 2);
//! # Ok::<(), raft_core::Error>(())
//! ```
//!
//! Incoming messages from peers go to [`Node::step`] at any point between readies.
//! A follower answers proposals with [`Error::NotLeader`] naming the leader it knows;
//! forwarding is the server's job, so the core never holds a request it cannot see
//! through.
#![forbid(unsafe_code)]

mod config;
mod election;
mod error;
mod membership;
mod message;
mod node;
mod progress;
pub mod quorum;
mod raft_log;
mod read_only;
mod ready;
mod reconfiguration;
mod replication;
mod status;
mod storage;
mod types;

pub use config::{Config, Mutation};
pub use error::{Error, StorageError};
pub use membership::{Membership, MembershipChange};
pub use message::{
    AppendRequest, AppendResponse, ForwardedReadId, Heartbeat, HeartbeatResponse, HeartbeatRound,
    Message, MessageBody, ReadHeartbeat, ReadHeartbeatResponse, ReadIndexRequest,
    ReadIndexResponse, VoteRequest, VoteResponse,
};
pub use node::Node;
pub use progress::ProgressState;
pub use read_only::{ReadMode, ReadState};
pub use ready::{Persist, PersistAck, ProposalOutcome, ProposalResult, Ready};
pub use status::{PeerProgress, Role, Status};
pub use storage::{HardState, InitialState, LogStore, MemoryLogStore, SnapshotMeta};
pub use types::{Entry, EntryId, EntryPayload, LogIndex, Monotonic, NodeId, Term};
