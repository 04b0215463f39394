//! The socket roles the engine drives. Each speaks to the engine only through
//! [`Role`](crate::engine::Role):
//!
//! - [`echo`]: the reflector (RFC 862, or sockperf's server), behind the [`guard`];
//! - [`pinger`]: sequenced probes on a schedule, replies matched and classified;
//! - [`relay`]: the impairment relay (`sonde impair`), driven by [`impairment`].
//!
//! Roles depend on the engine, the platform layer, the probe formats and the model, never on
//! the outputs: they hand over plain results ([`crate::model`]) and events.

pub(crate) mod echo;
pub(crate) mod guard;
pub(crate) mod impairment;
pub(crate) mod pinger;
pub(crate) mod relay;
mod service;
pub(crate) mod socket;
mod stamp;

pub use echo::Echo;
pub use pinger::Pinger;
pub use relay::Relay;
