//! sonde: high-rate UDP round-trip measurement.
//!
//! One non-blocking [`mio`] poll loop ([`Engine`]) drives socket roles: an RFC 862 [`Echo`]
//! server and a [`Pinger`] that pipelines sequenced probes, holds their timeouts in a timer
//! wheel, tells late, duplicate, reordered, mismatched and foreign replies apart from loss, and
//! records round trips in an HDR histogram.
//!
//! [`run`] runs whole measurements from Rust code and returns their summaries ([`model`]); the
//! roles and the loop below are the parts they are made of, and a role of one's own is a type
//! implementing [`Role`] (see `examples/discard.rs`):
//!
//! ```
//! use sonde::config::{Pace, PingConfig};
//! use sonde::{Echo, Engine, Pinger};
//!
//! # fn main() -> Result<(), sonde::error::Error> {
//! let mut echo = Echo::bind("127.0.0.1:0".parse().unwrap())?;
//! let mut cfg = PingConfig::new(echo.local_addr());
//! cfg.count = Some(1000);
//! cfg.inflight = Some(16);
//! cfg.pace = Pace::Window;
//! let mut pinger = Pinger::new(cfg)?;
//! Engine::new()?.run(&mut [&mut echo, &mut pinger])?;
//! let summary = pinger.summary();
//! assert_eq!(summary.counters.received, 1000);
//! println!("p50 {:.1} us", summary.rtt.unwrap().p50_us);
//! # Ok(())
//! # }
//! ```
//!
//! The parts depend on each other in one direction: `cli` → everything; `run` → `roles`,
//! `engine`; `roles` → `engine`, `sys`, `wire`, `model`, `config`; `output` → `model`;
//! `engine` → `sys`; `config` → `wire`; `wire` → `error` (a leaf); `model` and `sys` → nothing.
#![warn(unreachable_pub)]

pub mod config;
pub mod error;
pub mod model;
pub mod run;
pub mod wire;

mod cli;
mod engine;
mod output;
mod roles;
mod sys;

#[doc(hidden)]
pub mod fuzzing;

pub use engine::{Engine, Role, RunEnd, StopHandle, Waited, Wake, Wheel, TOKENS_PER_ROLE};
pub use roles::{Echo, Pinger, Relay};

/// Reading sonde's own files back: CSV rows, `.hgrm` distributions, interval logs.
pub mod export {
    pub use crate::output::export::{csv, hgrm, hlog};
}

/// The `sonde` command line: parses the arguments, runs, returns the exit status.
#[doc(hidden)]
pub fn cli_main() -> i32 {
    cli::main()
}
