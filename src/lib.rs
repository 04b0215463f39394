//! sonde: high-rate UDP round-trip measurement.
//!
//! One non-blocking [`mio`] poll loop ([`engine::Engine`]) drives socket roles: an RFC 862
//! [`echo::Echo`] server and a [`pinger::Pinger`] that pipelines sequenced probes, holds their
//! timeouts in a [`timer::Wheel`], tells late, duplicate, reordered, mismatched and foreign
//! replies apart from loss, and records round trips in an HDR histogram.
//!
//! [`run`] runs whole measurements from Rust code and returns their summaries; the roles and the
//! loop below are the parts they are made of:
//!
//! ```
//! use sonde::{config::PingConfig, echo::Echo, engine::Engine, pinger::Pinger};
//!
//! # fn main() -> Result<(), sonde::error::Error> {
//! let mut echo = Echo::bind("127.0.0.1:0".parse().unwrap())?;
//! let mut cfg = PingConfig::new(echo.local_addr());
//! cfg.count = Some(1000);
//! cfg.inflight = Some(16);
//! cfg.pace = sonde::config::Pace::Window;
//! let mut pinger = Pinger::new(cfg)?;
//! Engine::new()?.run(&mut [&mut echo, &mut pinger])?;
//! let summary = pinger.summary();
//! assert_eq!(summary.counters.received, 1000);
//! println!("p50 {:.1} us", summary.rtt.unwrap().p50_us);
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod cli;
pub mod config;
pub mod echo;
pub mod engine;
pub mod error;
pub mod export;
pub mod follow;
#[doc(hidden)]
pub mod fuzzing;
pub mod guard;
pub mod impairment;
pub mod inflight;
pub mod interval;
pub mod loss_pattern;
pub mod merge;
pub mod net;
pub mod outage;
pub mod pinger;
pub mod plot;
pub mod relay;
pub mod report;
pub mod run;
pub mod stats;
pub mod summary;
pub mod sys;
pub mod threads;
pub mod threshold;
pub mod timer;
pub mod wire;
