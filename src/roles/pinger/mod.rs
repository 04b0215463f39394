//! The pinger role: sends sequenced probes on a schedule, matches replies, keeps score.
//!
//! One probe's path, by file: schedule and encode (`send.rs`, with the format's codec from
//! [`crate::wire`]) → send (`send.rs`, through [`crate::sys`]) → timeout armed in the timer wheel
//! → reply received and timed (`receive.rs`, `clock.rs`) → decoded and checked against what was
//! sent → classified by the in-flight table (`inflight.rs`) → recorded in the distributions and
//! counters (`receive.rs`) → resolved probes, in sequence order, feed the outage and loss-pattern
//! trackers (`outage.rs`, `loss_pattern.rs`) → intervals and the summary (`results.rs`).

mod clock;
mod inflight;
mod loss_pattern;
mod outage;
mod receive;
mod results;
mod send;

// The fuzz targets drive the sequence table directly.
pub(crate) use inflight::{InFlight, ProbeState, Verdict};

use crate::config::{Pace, PingConfig};
use crate::engine::{Role, Wake, Wheel};
use crate::error::Error;
use crate::model::{
    Counters, IntervalClock, IntervalReport, Jitter, PingDistributions, ProbeEvent, RxTimestamps,
    TooBig,
};
use crate::roles::socket;
use crate::roles::stamp::host_clock;
use crate::sys::{
    bind_to_device, enable_gro, enable_icmp_errors, enable_recv_tos, enable_recv_ttl,
    enable_rx_metadata, granted_buffers, set_dont_fragment, set_tos, set_ttl, MmsgBatch, SendBatch,
};
use crate::wire::{ClockQuality, Wire};
use loss_pattern::LossPattern;
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use outage::OutageTracker;
use send::SEND_BATCH;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What `--interface` failing means to a user: a name that is not there, or a right missing.
fn interface_error(interface: &str, e: io::Error) -> Error {
    let why = match e.raw_os_error() {
        Some(libc::ENODEV) => "no such interface here (see `ip link`)".to_string(),
        Some(libc::EPERM) => "binding to an interface needs root (CAP_NET_RAW)".to_string(),
        _ => e.to_string(),
    };
    Error::config("--interface", format!("{interface}: {why}"))
}

/// Timer-wheel resolution for probe timeouts.
const TICK_NS: u64 = 100_000;
/// Closed-loop mode sizes its sequence table as if probes could go out this fast.
const WINDOW_RATE_BOUND: f64 = 1_000_000.0;
/// Upper bound on sequence-table slots (about 32 bytes each).
const MAX_TABLE: usize = 1 << 22;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sending,
    Draining,
    Done,
}

/// What the kernel granted the socket when it was opened.
#[derive(Debug, Clone, Copy)]
struct SocketInfo {
    rcvbuf_bytes: usize,
    sndbuf_bytes: usize,
    rx_timestamps: RxTimestamps,
    gro: bool,
    connected: bool,
}

type Observer<'a> = Box<dyn FnMut(&ProbeEvent) + Send + 'a>;
type IntervalSink<'a> = Box<dyn FnMut(IntervalReport) + Send + 'a>;

pub struct Pinger<'a> {
    cfg: PingConfig,
    inflight_max: usize,
    timeout_ns: u64,
    socket: UdpSocket,
    local: SocketAddr,
    session: u64,
    /// The probe as sent: padding filled once, header rewritten per probe.
    probe: Vec<u8>,
    /// Receive slots, taken out while a batch is processed.
    batch: Option<Box<MmsgBatch>>,
    /// Send slots, and the intended send times of the probes collected in them.
    send_batch: Option<Box<SendBatch>>,
    intended: Vec<u64>,
    table: InFlight,
    timeouts: Wheel<u64>,
    counters: Counters,
    dist: PingDistributions,
    jitter: Jitter,
    outages: OutageTracker,
    loss_pattern: LossPattern,
    phase: Phase,
    epoch: Instant,
    /// The epoch on the wall clock, since the Unix epoch: T1 and T4 of formats that carry
    /// wall-clock times are the epoch's plus the monotonic offset (one clock read per run).
    epoch_wall: Duration,
    /// This host's clock as the kernel's discipline says (for STAMP's Error Estimate).
    clock: ClockQuality,
    started: bool,
    /// When sending stopped and when the last verdict came, ns since the epoch.
    send_end_ns: Option<u64>,
    end_ns: Option<u64>,
    /// A send hit a full socket buffer: wait for WRITABLE before the next.
    write_blocked: bool,
    ever_sent: bool,
    interrupted: bool,
    peak_in_flight: usize,
    observer: Option<Observer<'a>>,
    /// Periodic reports, when asked for, and timeouts fired (for their loss counts).
    intervals: Option<(IntervalClock, IntervalSink<'a>)>,
    timeouts_fired: u64,
    /// Probes handled so far (sent or failed), for a progress display on another thread.
    progress: Option<Arc<AtomicU64>>,
    socket_info: SocketInfo,
    /// With `--df`: probes too big for the path.
    too_big: Option<TooBig>,
    /// The kernel stamps received datagrams (and they need converting to the monotonic clock).
    kernel_stamps: bool,
}

impl<'a> Pinger<'a> {
    /// Binds the pinger's socket. The config must have passed [`PingConfig::validate`].
    pub fn new(cfg: PingConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let bind = cfg.bind.unwrap_or_else(|| socket::any_for(&cfg.target));
        let (socket, local) = socket::bind_with(bind, cfg.buffers)?;
        if let Some(tos) = cfg.tos {
            set_tos(&socket, local.is_ipv6(), tos.byte())
                .map_err(|e| Error::io("set the DSCP/ECN (--dscp, --ecn) of", local, e))?;
        }
        if let Some(ttl) = cfg.ttl {
            set_ttl(&socket, local.is_ipv6(), ttl)
                .map_err(|e| Error::io("set the TTL (--ttl) of", local, e))?;
        }
        if let Some(interface) = &cfg.interface {
            bind_to_device(&socket, interface).map_err(|e| interface_error(interface, e))?;
        }
        if cfg.dont_fragment {
            set_dont_fragment(&socket, local.is_ipv6())
                .map_err(|e| Error::io("set don't-fragment (--df) on", local, e))?;
        }
        // Best effort: without it a stopped server looks like silence rather than a refusal.
        let _ = enable_icmp_errors(&socket, cfg.target.is_ipv6());
        let (timestamps, _) = enable_rx_metadata(&socket, cfg.kernel_timestamps);
        // The replies' TOS and TTL cost a control message each per receive: read them when the
        // run is about them.
        let headers = cfg.tos.is_some() || cfg.ttl.is_some();
        if headers {
            enable_recv_tos(&socket, local.is_ipv6());
            enable_recv_ttl(&socket, local.is_ipv6());
        }
        let (rcvbuf_bytes, sndbuf_bytes) = granted_buffers(&socket).unwrap_or((0, 0));
        let mut send_batch = Box::new(SendBatch::new(SEND_BATCH, cfg.size, cfg.target));
        send_batch.set_gso(cfg.gso.applies_to(cfg.target));
        if cfg.connect {
            socket
                .connect(cfg.target)
                .map_err(|e| Error::io("connect (--connect) to", cfg.target, e))?;
            send_batch.set_connected(true);
        }
        // Replies coalesced in one buffer share its receive time, as they arrived together.
        let gro = cfg.gro && enable_gro(&socket);
        let socket_info = SocketInfo {
            rcvbuf_bytes,
            sndbuf_bytes,
            rx_timestamps: if timestamps {
                RxTimestamps::Kernel
            } else {
                RxTimestamps::UserSpace
            },
            gro,
            connected: cfg.connect,
        };
        let inflight_max = cfg.inflight();
        let timeout_ns = cfg.timeout.as_nanos() as u64;
        let rate_bound = match cfg.pace {
            Pace::Rate(rate) => rate,
            Pace::Window => WINDOW_RATE_BOUND,
        };
        let span = (rate_bound * cfg.timeout.as_secs_f64()).ceil() as usize;
        let table_max = span.max(inflight_max).saturating_mul(2).min(MAX_TABLE);
        let session = random_session();
        let mut probe = vec![0u8; cfg.size];
        if cfg.wire.echoes_padding() {
            cfg.wire.fill_padding_after(&mut probe, session);
        }
        Ok(Self {
            inflight_max,
            timeout_ns,
            socket,
            local,
            session,
            probe,
            batch: Some(Box::new(MmsgBatch::new())),
            send_batch: Some(send_batch),
            intended: Vec::with_capacity(SEND_BATCH),
            table: InFlight::new(inflight_max.saturating_mul(2).min(4096), table_max),
            timeouts: Wheel::new(),
            counters: Counters::default(),
            too_big: cfg.dont_fragment.then(TooBig::default),
            dist: PingDistributions {
                one_way: matches!(cfg.wire, Wire::Stamp(_)).then(Default::default),
                reply_headers: headers.then(Default::default),
                ..PingDistributions::default()
            },
            jitter: Jitter::default(),
            outages: OutageTracker::default(),
            loss_pattern: LossPattern::default(),
            phase: Phase::Sending,
            epoch: Instant::now(),
            epoch_wall: Duration::ZERO,
            clock: host_clock(),
            started: false,
            send_end_ns: None,
            end_ns: None,
            write_blocked: false,
            ever_sent: false,
            interrupted: false,
            peak_in_flight: 0,
            observer: None,
            intervals: None,
            timeouts_fired: 0,
            progress: None,
            socket_info,
            kernel_stamps: timestamps,
            cfg,
        })
    }

    /// Calls `f` for every probe event as it happens.
    pub fn observe(&mut self, f: impl FnMut(&ProbeEvent) + Send + 'a) {
        self.observer = Some(Box::new(f));
    }

    /// Ends observation: drops the observer (flushing whatever it writes to).
    pub fn stop_observing(&mut self) {
        self.observer = None;
        self.intervals = None;
    }

    /// Hands `sink` a report every `period` from the first send, and one for the last, partial
    /// period when the run ends.
    pub fn report_intervals(
        &mut self,
        period: Duration,
        sink: impl FnMut(IntervalReport) + Send + 'a,
    ) {
        let clock = IntervalClock::new(period.as_nanos().min(u64::MAX.into()) as u64);
        self.intervals = Some((clock, Box::new(sink)));
    }

    /// Keeps `counter` up to date with the number of probes handled (sent or failed).
    pub fn count_progress(&mut self, counter: Arc<AtomicU64>) {
        self.progress = Some(counter);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn session(&self) -> u64 {
        self.session
    }

    pub fn config(&self) -> &PingConfig {
        &self.cfg
    }

    /// The effective cap on outstanding probes.
    pub fn inflight_max(&self) -> usize {
        self.inflight_max
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn emit(&mut self, event: ProbeEvent) {
        if let Some(observer) = self.observer.as_mut() {
            observer(&event);
        }
    }
}

impl Role for Pinger<'_> {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(
            &mut self.socket,
            first,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    fn ready(&mut self, _index: usize, event: &Event) -> Result<(), Error> {
        if event.is_error() {
            self.drain_icmp();
        }
        if event.is_writable() {
            self.write_blocked = false;
        }
        if event.is_readable() || event.is_error() {
            self.receive()?;
        }
        Ok(())
    }

    fn reads_directly(&self) -> bool {
        true
    }

    fn poll_sockets(&mut self) -> Result<bool, Error> {
        if let Some(batch) = self.batch.as_mut() {
            batch.set_adaptive(true);
        }
        Ok(self.phase != Phase::Done && self.receive()? > 0)
    }

    fn advance(&mut self, now: Instant) -> Result<Wake, Error> {
        if !self.started {
            self.started = true;
            // The two clocks read together (within 2 us where the thread is not preempted each
            // try): T1 and T4 of STAMP are the epoch's wall time plus monotonic offsets, and a
            // gap here would bias every one-way delay (one way early, the other late).
            let pair = clock::ClockPair::read(true);
            self.epoch = pair.mono.min(now);
            let offset = pair.mono.saturating_duration_since(self.epoch);
            self.epoch_wall = match pair.real {
                Some((before, after)) => before + (after - before) / 2 - offset,
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .saturating_sub(offset),
            };
        }
        if self.phase == Phase::Done {
            return Ok(Wake::IDLE);
        }
        let now_ns = self.ns(now);
        self.expire(now_ns);
        self.close_intervals(now_ns, false);
        let send_wake = if self.phase == Phase::Sending {
            self.send_due(now)?
        } else {
            Wake::IDLE
        };
        if self.phase == Phase::Draining && self.table.in_flight() == 0 {
            self.expire(now_ns);
            self.finish(now_ns);
            return Ok(Wake::IDLE);
        }
        let timeout_wake = Wake {
            around: self
                .timeouts
                .next_expiration()
                .map(|tick| self.epoch + Duration::from_nanos(tick * TICK_NS)),
            exactly: None,
        };
        let interval_wake = match &self.intervals {
            Some((clock, _)) => {
                Wake::around(self.epoch + Duration::from_nanos(clock.boundary_ns()))
            }
            None => Wake::IDLE,
        };
        Ok(send_wake.min(timeout_wake).min(interval_wake))
    }

    fn stop(&mut self, now: Instant, hard: bool) {
        self.interrupted = true;
        let now_ns = self.ns(now);
        if self.phase == Phase::Sending {
            self.phase = Phase::Draining;
            self.send_end_ns = Some(now_ns);
        }
        if hard && self.phase != Phase::Done {
            self.counters.in_flight = self.table.abandon() as u64;
            self.finish(now_ns);
        }
    }

    fn is_client(&self) -> bool {
        true
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// A per-run id (and default seed): random enough that two runs on one host never share one.
pub(crate) fn random_session() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish()
}
