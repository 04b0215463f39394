//! Running sonde from Rust code: a ping, a loopback run, or an echo server on its own thread,
//! each returning the same summary types the command line prints.
//!
//! ```
//! use sonde::config::{EchoConfig, Pace, PingConfig};
//! use std::time::Duration;
//!
//! # fn main() -> Result<(), sonde::error::Error> {
//! let server = sonde::run::EchoServer::start(EchoConfig {
//!     bind: "127.0.0.1:0".parse().unwrap(),
//!     ..EchoConfig::default()
//! })?;
//! let mut cfg = PingConfig::new(server.local_addr());
//! cfg.count = Some(500);
//! cfg.pace = Pace::Rate(10_000.0);
//! cfg.timeout = Duration::from_millis(500);
//! let summary = sonde::run::ping(cfg)?;
//! let echoed = server.stop()?;
//! assert_eq!(summary.counters.sent, 500);
//! assert_eq!(echoed.datagrams, summary.counters.sent);
//! # Ok(())
//! # }
//! ```

use crate::config::{max_payload, EchoConfig, Pace, PingConfig, Policy};
use crate::engine::{Engine, StopHandle};
use crate::error::Error;
use crate::model::pmtu::{Outcome, PmtuReport, Search, Step};
use crate::model::{EchoSummary, PingSummary};
use crate::roles::{Echo, Pinger};
use std::net::SocketAddr;
use std::thread::JoinHandle;

/// Pings `cfg.target` on this thread until the count or duration is used up; returns the
/// summary. Without a count or a duration it runs until Ctrl-C or SIGTERM.
pub fn ping(cfg: PingConfig) -> Result<PingSummary, Error> {
    let mut pinger = Pinger::new(cfg)?;
    let mut engine = Engine::new()?;
    if pinger.config().count.is_none() && pinger.config().duration.is_none() {
        engine.stop_on_signals()?;
    }
    engine.run(&mut [&mut pinger])?;
    Ok(pinger.summary())
}

/// Finds the path MTU to `cfg.target` (`sonde ping --pmtu`): `probes` probes of a size with
/// don't-fragment set, the next size chosen by [`Search`]; `each` is told every size's outcome
/// as it is known. Each size waits up to `cfg.timeout` for its replies.
pub fn path_mtu(
    mut cfg: PingConfig,
    probes: u64,
    mut each: impl FnMut(&Step),
) -> Result<PmtuReport, Error> {
    cfg.dont_fragment = true;
    cfg.count = Some(probes);
    cfg.duration = None;
    // The probes of a size go out together; the wait is the timeout.
    cfg.pace = Pace::Rate(1000.0);
    let mut search = Search::new(
        cfg.header_len(),
        max_payload(&cfg.target),
        cfg.target.is_ipv6(),
    );
    while let Some(size) = search.next_size() {
        cfg.size = size;
        let s = ping(cfg.clone())?;
        let too_big = s.too_big.unwrap_or_default();
        let outcome = if s.counters.received > 0 {
            Outcome::Back
        } else if too_big.not_sent + too_big.icmp > 0 {
            Outcome::TooBig {
                mtu: too_big.path_mtu_bytes,
            }
        } else {
            Outcome::Lost
        };
        search.record(size, outcome);
        each(&Step {
            size_bytes: size,
            outcome,
        });
    }
    let timeout_ms = cfg.timeout.as_secs_f64() * 1e3;
    Ok(search.report(cfg.target.to_string(), probes, timeout_ms))
}

/// An echo server and a pinger aimed at it, in one loop on this thread (what `sonde loopback`
/// runs per flow). `cfg.target` only chooses the address family and IP: the port is the echo's.
pub fn loopback(cfg: PingConfig) -> Result<(PingSummary, EchoSummary), Error> {
    let (mut echo, mut pinger) = loopback_pair(cfg)?;
    Engine::new()?.run(&mut [&mut echo, &mut pinger])?;
    Ok((pinger.summary(), echo.summary()))
}

/// The two roles of a loopback run, bound but not started: an echo on `cfg.target`'s IP (a port
/// the kernel picks) that speaks `cfg.wire` and checks `cfg.key`, with the default socket
/// options, and a pinger aimed at it.
pub fn loopback_pair(mut cfg: PingConfig) -> Result<(Echo, Pinger<'static>), Error> {
    let echo = Echo::with_config(&EchoConfig {
        bind: SocketAddr::new(cfg.target.ip(), 0),
        wire: cfg.wire,
        policy: Policy {
            key: cfg.key.clone(),
            ..Policy::default()
        },
        ..EchoConfig::default()
    })?;
    cfg.target = echo.local_addr();
    Ok((echo, Pinger::new(cfg)?))
}

/// An echo server running on its own thread until [`EchoServer::stop`].
pub struct EchoServer {
    local: SocketAddr,
    stop: StopHandle,
    thread: JoinHandle<Result<EchoSummary, Error>>,
}

impl EchoServer {
    /// Binds and starts serving.
    pub fn start(cfg: EchoConfig) -> Result<Self, Error> {
        let mut echo = Echo::with_config(&cfg)?;
        let local = echo.local_addr();
        let mut engine = Engine::new()?;
        let stop = engine.stop_handle()?;
        let thread = std::thread::Builder::new()
            .name("sonde-echo".into())
            .spawn(move || {
                engine.run(&mut [&mut echo])?;
                Ok(echo.summary())
            })
            .map_err(|e| Error::Setup("spawn the echo thread", e))?;
        Ok(Self {
            local,
            stop,
            thread,
        })
    }

    /// The address it answers on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Stops serving and returns the counters.
    pub fn stop(self) -> Result<EchoSummary, Error> {
        self.stop.stop();
        self.thread.join().unwrap_or_else(|_| {
            Err(Error::Setup(
                "join the echo thread",
                std::io::Error::other("it panicked"),
            ))
        })
    }
}
