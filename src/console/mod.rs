//! Web console into app containers: the pure parts of the protocol and its limits.
//!
//! The session itself (websocket ⇄ SSH `pct enter`) lives in
//! `api::handlers::console`; this module decides without I/O: what a client text frame
//! means ([`protocol`]), why a session ended and how that is told to the client
//! ([`protocol::EndReason`]), how many sessions may be open ([`limits`]) and how fast
//! output may flow ([`bucket`]).

pub mod bucket;
pub mod limits;
pub mod protocol;

pub use bucket::TokenBucket;
pub use limits::{ConsoleSlots, LimitError, Slot};
pub use protocol::{Control, ControlError, EndReason};
