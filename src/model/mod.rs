//! Plain results: what a run measured, as data that merges and that every output is made from.
//! Nothing here knows sockets, roles or output formats.
//!
//! - [`summary`]: the summaries of a ping, an echo and a relay, and their parts;
//! - [`event`]: what happens to each probe, as it happens;
//! - [`interval`]: one stretch of a run, per flow and combined;
//! - [`stats`]: latency distributions (HDR histogram, exact moments, RFC 3550 jitter);
//! - [`stamp`]: what STAMP adds: one-way delays, IPDV, losses and reordering by direction, TLVs;
//! - [`pmtu`]: the path MTU search of `ping --pmtu`;
//! - [`aggregate`]: every merge of the above.

pub mod aggregate;
pub mod event;
pub mod interval;
pub mod pmtu;
pub mod stamp;
pub mod stats;
pub mod summary;

pub use event::{ProbeEvent, ReplyKind};
pub use interval::{IntervalClock, IntervalReport, IntervalSummary};
pub use stamp::{OneWay, OneWayDistributions, StampTlvSummary, TlvCounts, TtlRange};
pub use stats::{Jitter, Latency, LatencySummary, PingDistributions, MAX_NS};
pub use summary::{
    target_label, Batching, Counters, DirectionStats, EchoSummary, HeaderTally, LagSummary,
    LossBursts, Outage, PingSummary, ReceivedTos, Refusals, RelayClient, RelayClients,
    RelaySummary, ReplyHeaders, SocketSummary, StampSource, TooBig, TxStampCounts,
};
