//! The pinger role: sends sequenced probes on a schedule, matches replies, keeps score.
//!
//! One probe's path, by file: schedule and encode (`send.rs`, with the format's codec from
//! [`crate::wire`]) → send (`send.rs`, through [`crate::sys`]) → timeout armed in the timer wheel
//! → reply received and timed (`receive.rs`, `clock.rs`) → decoded and checked against what was
//! sent → classified by the in-flight table (`inflight.rs`) → recorded in the distributions and
//! counters (`receive.rs`) → resolved probes, in sequence order, feed the outage and loss-pattern
//! trackers (`outage.rs`, `loss_pattern.rs`) → intervals and the summary (`results.rs`).
//!
//! One pinger can probe many targets from its one socket (`target.rs`): each has its own sequence
//! space, table, figures and outages; replies are told apart by their source address. The engine
//! drives it through `role.rs`.

mod clock;
mod departures;
mod inflight;
mod loss_pattern;
mod outage;
mod receive;
mod reload;
mod results;
mod role;
mod send;
mod target;

// The fuzz targets drive the sequence table directly.
pub(crate) use inflight::{InFlight, ProbeState, Verdict};

use crate::config::{Pace, PingConfig};
use crate::engine::Wheel;
use crate::error::Error;
use crate::model::stats::Compact;
use crate::model::{
    Counters, IntervalClock, IntervalReport, PingDistributions, ProbeEvent, StampSource,
};
use crate::roles::socket;
use crate::roles::stamp::host_clock;
use crate::sys::{
    bind_to_device, enable_gro, enable_icmp_errors, enable_recv_tos, enable_recv_ttl,
    enable_rx_metadata, enable_tx_timestamps, granted_buffers, set_dont_fragment, set_tos, set_ttl,
    socket_drops, ErrorQueue, IcmpError, MmsgBatch, SendBatch,
};
use crate::wire::{ClockQuality, Wire};
use departures::Departures;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use send::{Unbooked, SEND_BATCH};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::{Shape, Target};

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
    rx_timestamps: StampSource,
    gro: bool,
    connected: bool,
}

/// Told each probe event and its target (`None`: a foreign datagram).
type Observer<'a> = Box<dyn FnMut(Option<SocketAddr>, &ProbeEvent) + Send + 'a>;
type IntervalSink<'a> = Box<dyn FnMut(IntervalReport) + Send + 'a>;

/// Which target a timeout belongs to, and its probe.
type TimeoutKey = (u32, u64);

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
    /// Send slots, the target they go to, and the intended send times of the probes collected
    /// in them (all for that target).
    send_batch: Option<Box<SendBatch>>,
    batch_target: usize,
    intended: Vec<u64>,
    targets: Vec<Target>,
    /// Targets by address, to place replies; empty for one target for good (compared directly).
    by_addr: HashMap<SocketAddr, u32>,
    timeouts: Wheel<TimeoutKey>,
    /// At a fixed rate: probes scheduled so far over every target (probe `k` of target `t` is
    /// number `k * targets + t`). Closed loop: the target to try first.
    scheduled: u64,
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
    /// A blocking loop's registration, to ask for WRITABLE only while a send is blocked: each
    /// send that frees buffer space (on loopback, every send, at once) is an edge that would
    /// wake the loop for nothing. `None` while spinning (nothing registered).
    registration: Option<(Registry, Token)>,
    watching_writable: bool,
    /// The socket is in epoll (the loop takes it out while the pinger waits in its reads).
    in_epoll: bool,
    ever_sent: bool,
    interrupted: bool,
    observer: Option<Observer<'a>>,
    /// Several targets (or targets that can change): the round trips of all, to the full
    /// precision (the targets keep theirs compact), and at a fixed rate how late probes left
    /// and their round trips from the intended send time, which are the loop's (a target of one
    /// run keeps all of these in its own distributions).
    totals: Option<Box<PingDistributions>>,
    /// What each target gets (kept for targets a reload adds).
    shape: Shape,
    /// The counts of targets a reload removed (once buried).
    retired: Counters,
    /// Targets removed but not yet buried, oldest first.
    stopped: std::collections::VecDeque<usize>,
    /// New lists of targets, when they can change (see `reload.rs`).
    retarget: Option<Receiver<Vec<SocketAddr>>>,
    /// At a fixed rate: probe number `.0` is due at `.1` ns, the later ones spread from it.
    rate_base: (u64, u64),
    /// One IPv6 socket serves targets of both families.
    both_families: bool,
    /// Foreign datagrams and the kernel's drops: the socket's, no target's.
    socket_counters: Counters,
    /// Where periodic reports go, when asked for (each target keeps its period's figures).
    intervals: Option<IntervalSink<'a>>,
    /// Probes handled so far (sent or failed), for a progress display on another thread.
    progress: Option<Arc<AtomicU64>>,
    handled: u64,
    socket_info: SocketInfo,
    /// The kernel stamps received datagrams (and they need converting to the monotonic clock).
    kernel_stamps: bool,
    /// The kernel stamps sent messages: which probes each stamp will be for.
    departures: Option<Box<Departures>>,
    /// Buffers for the error queue (ICMP errors, transmit timestamps), and what the last read
    /// found, kept between reads so that reading allocates nothing.
    error_queue: Box<ErrorQueue>,
    queued_errors: Vec<(IcmpError, Option<u64>)>,
    queued_stamps: Vec<(u32, Duration)>,
    /// The socket reported something on its error queue.
    error_queue_ready: bool,
    /// Spinning without the socket in epoll (`register_spinning`): turns since the error queue
    /// was last read.
    spinning: Option<u32>,
    /// The loop waits in this pinger's reads (`Role::wait_in_reads`): a ping-pong's probe
    /// leaves at the start of the read that waits for its reply.
    sends_in_reads: bool,
    /// A probe that left and waits to be booked (`send.rs`).
    unbooked: Option<Unbooked>,
}

impl<'a> Pinger<'a> {
    /// Binds the pinger's socket. The config must have passed [`PingConfig::validate`].
    pub fn new(cfg: PingConfig) -> Result<Self, Error> {
        cfg.validate()?;
        // Targets of both families: one IPv6 socket for all, IPv4 ones at mapped addresses.
        let both_families = cfg.both_families();
        let (socket, local) = match (cfg.bind, both_families) {
            (None, true) => socket::bind_both_families(cfg.buffers)?,
            (bind, _) => {
                let bind = bind.unwrap_or_else(|| socket::any_for(&cfg.target));
                socket::bind_with(bind, cfg.buffers)?
            }
        };
        if let Some(tos) = cfg.tos {
            set_tos(&socket, local.is_ipv6(), tos.byte())
                .map_err(|e| Error::io("set the DSCP/ECN (--dscp, --ecn) of", local, e))?;
        }
        if let Some(ttl) = cfg.ttl {
            for ipv6 in families(local, both_families) {
                set_ttl(&socket, ipv6, ttl)
                    .map_err(|e| Error::io("set the TTL (--ttl) of", local, e))?;
            }
        }
        if let Some(interface) = &cfg.interface {
            bind_to_device(&socket, interface).map_err(|e| interface_error(interface, e))?;
        }
        for ipv6 in families(local, both_families) {
            if cfg.dont_fragment {
                set_dont_fragment(&socket, ipv6)
                    .map_err(|e| Error::io("set don't-fragment (--df) on", local, e))?;
            }
            // Best effort: without it a stopped server looks like silence, not a refusal.
            let _ = enable_icmp_errors(&socket, ipv6);
        }
        // The drop count rides on every reply only where the kernel cannot be asked for it
        // (`SO_MEMINFO`, read for the summary): a control message makes each receive copy a
        // message header in and out, which a busy-polled one in flight feels.
        let drops_by_message = socket_drops(&socket).is_none();
        let (timestamps, drops_on) =
            enable_rx_metadata(&socket, cfg.kernel_timestamps, drops_by_message);
        // Send times from the kernel too, so that a round trip is kernel to kernel.
        let departures =
            (timestamps && cfg.kernel_send_times() && enable_tx_timestamps(&socket).is_ok())
                .then(|| Box::new(Departures::default()));
        // The replies' TOS and TTL cost a control message each per receive: read them when the
        // run is about them.
        let headers = cfg.tos.is_some() || cfg.ttl.is_some();
        if headers {
            enable_recv_tos(&socket, local.is_ipv6());
            for ipv6 in families(local, both_families) {
                enable_recv_ttl(&socket, ipv6);
            }
        }
        let (rcvbuf_bytes, sndbuf_bytes) = granted_buffers(&socket).unwrap_or((0, 0));
        let first = socket::as_seen_by(local.is_ipv6(), cfg.target);
        let mut send_batch = Box::new(SendBatch::new(SEND_BATCH, cfg.size, first));
        send_batch.set_gso(cfg.also.is_empty() && cfg.gso.applies_to(cfg.target));
        if cfg.connect {
            socket
                .connect(cfg.target)
                .map_err(|e| Error::io("connect (--connect) to", cfg.target, e))?;
            send_batch.set_connected(true);
        }
        // Replies coalesced in one buffer share its receive time, as they arrived together.
        let gro = cfg.gro && enable_gro(&socket);
        let mut batch = Box::new(MmsgBatch::new());
        batch.set_control_messages(timestamps || drops_on || headers || gro);
        // Times from user space: the clock is read as soon as a receive returns.
        batch.set_stamp_reads(!timestamps && departures.is_none());
        let socket_info = SocketInfo {
            rcvbuf_bytes,
            sndbuf_bytes,
            rx_timestamps: if timestamps {
                StampSource::Kernel
            } else {
                StampSource::UserSpace
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
        let compact = !cfg.also.is_empty();
        let shape = Shape {
            compact: compact.then(|| round_trips_of_many(cfg.targets().count(), timeout_ns)),
            one_way: matches!(cfg.wire, Wire::Stamp(_)),
            headers,
            too_big: cfg.dont_fragment,
            ipv6_socket: local.is_ipv6(),
            // One of many targets starts small: its table doubles as probes stay out.
            table: (
                inflight_max
                    .saturating_mul(2)
                    .min(if compact { 8 } else { 4096 }),
                table_max,
            ),
        };
        let targets: Vec<Target> = cfg.targets().map(|a| Target::new(a, &shape)).collect();
        let by_addr = match compact {
            true => (0..).zip(&targets).map(|(i, t)| (t.addr, i)).collect(),
            false => HashMap::new(),
        };
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
            batch: Some(batch),
            send_batch: Some(send_batch),
            batch_target: 0,
            intended: Vec::with_capacity(SEND_BATCH),
            targets,
            by_addr,
            timeouts: Wheel::new(),
            scheduled: 0,
            phase: Phase::Sending,
            epoch: Instant::now(),
            epoch_wall: Duration::ZERO,
            clock: host_clock(),
            started: false,
            send_end_ns: None,
            end_ns: None,
            write_blocked: false,
            registration: None,
            watching_writable: false,
            in_epoll: true,
            ever_sent: false,
            interrupted: false,
            observer: None,
            intervals: None,
            progress: None,
            handled: 0,
            socket_counters: Counters::default(),
            both_families,
            shape,
            retired: Counters::default(),
            stopped: Default::default(),
            retarget: None,
            rate_base: (0, 0),
            totals: compact.then(Default::default),
            socket_info,
            kernel_stamps: timestamps,
            departures,
            error_queue: Box::new(ErrorQueue::new()),
            queued_errors: Vec::new(),
            queued_stamps: Vec::new(),
            error_queue_ready: false,
            spinning: None,
            sends_in_reads: false,
            unbooked: None,
            cfg,
        })
    }

    /// Calls `f` for every probe event as it happens, with its target (`None` for a datagram
    /// from elsewhere).
    pub fn observe(&mut self, f: impl FnMut(Option<SocketAddr>, &ProbeEvent) + Send + 'a) {
        self.observer = Some(Box::new(f));
    }

    /// Ends observation: drops the observer (flushing whatever it writes to).
    pub fn stop_observing(&mut self) {
        self.observer = None;
        self.intervals = None;
    }

    /// Hands `sink` a report every `period` from the first send, and one for the last, partial
    /// period when the run ends. With several targets the report is their total, each target's
    /// own in its `by_target`.
    pub fn report_intervals(
        &mut self,
        period: Duration,
        sink: impl FnMut(IntervalReport) + Send + 'a,
    ) {
        let period_ns = period.as_nanos().min(u64::MAX.into()) as u64;
        let compact = self.targets.len() > 1;
        for target in &mut self.targets {
            target.intervals = Some(Box::new(IntervalClock::new(period_ns, compact)));
        }
        self.intervals = Some(Box::new(sink));
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

    /// The targets' addresses, in the order of `cfg.targets()`.
    pub fn targets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.targets.iter().map(|t| t.addr)
    }

    /// The first target's counters (the only target's, in a run of one).
    pub fn counters(&self) -> &Counters {
        &self.targets[0].counters
    }

    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    fn emit(&mut self, target: Option<usize>, event: ProbeEvent) {
        if let Some(observer) = self.observer.as_mut() {
            observer(target.map(|t| self.targets[t].addr), &event);
        }
    }

    /// Probes have intended send times of their own (a fixed rate; a closed loop sends when
    /// there is room).
    fn at_rate(&self) -> bool {
        matches!(self.cfg.pace, Pace::Rate(_))
    }

    /// Probes sent and not yet answered or timed out, over every target.
    fn in_flight(&self) -> usize {
        self.targets.iter().map(|t| t.table.in_flight()).sum()
    }
}

/// Spinning, turns after which send times still waiting on the error queue are read (those of
/// probes answered are read with their replies): about as often as the loop asks epoll.
const SPINNING_TURNS_PER_ERROR_READ: u32 = 64;

impl Pinger<'_> {
    /// Spinning without the socket in epoll: whether there is what its events would have said
    /// (for `advance` to act on) — room to send again after a full buffer (a `poll` of the
    /// socket, only while blocked), and the error queue to read: ICMP errors flagged by the
    /// receive path, and now and then send times still waiting, so that those of lost probes
    /// do not pile up in the receive buffer.
    fn poll_unregistered(&mut self) -> bool {
        let Some(turns) = self.spinning.as_mut() else {
            return false;
        };
        *turns += 1;
        let stamps_waiting = *turns >= SPINNING_TURNS_PER_ERROR_READ
            && self.departures.as_ref().is_some_and(|d| d.awaiting());
        if stamps_waiting {
            self.error_queue_ready = true;
        }
        if self.write_blocked && crate::sys::writable(&self.socket) {
            self.write_blocked = false;
            return true;
        }
        self.error_queue_ready
    }

    /// Adds WRITABLE to the socket's registration while a send is blocked, and takes it off
    /// once the socket has room. Where that fails, a blocked send polls for room instead.
    pub(super) fn watch_writable(&mut self, on: bool) {
        if self.watching_writable == on || !self.in_epoll {
            // Out of epoll, the loop registers WRITABLE with the socket when it waits there.
            return;
        }
        let Some((registry, token)) = &self.registration else {
            return;
        };
        let interest = match on {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        // A socket with room already when WRITABLE is added reports it at once (epoll looks).
        if registry
            .reregister(&mut self.socket, *token, interest)
            .is_ok()
        {
            self.watching_writable = on;
        }
    }

    /// The most probes that can be in flight at once, over every target.
    fn window(&self) -> usize {
        self.inflight_max.saturating_mul(self.targets.len())
    }

    /// One target for the whole run (not a list that may change): its timeouts are read off
    /// its table of probes in flight, with no timer wheel, and every reply comes from it.
    fn one_target(&self) -> bool {
        self.by_addr.is_empty()
    }

    /// The tick of the next timeout that can still fire: for one target, that of its oldest
    /// probe in flight; else the wheel's next (which also holds the timers of probes answered
    /// since, dropped when they come due).
    fn next_timeout_tick(&mut self) -> Option<u64> {
        if self.one_target() {
            let one = &mut self.targets[0];
            one.settle();
            let sent_ns = one.table.oldest_in_flight_sent_ns()?;
            return Some((sent_ns + self.timeout_ns).div_ceil(TICK_NS));
        }
        self.timeouts.next_expiration()
    }
}

/// Targets up to which each keeps its round trips to two significant digits (16 KiB each at a
/// 1 s timeout); more keep one (2 KiB, within 6%), so that 10 000 targets fit in tens of MiB.
/// The run's total keeps three either way.
const TWO_DIGITS_UP_TO: usize = 2_000;

/// How each of `targets` targets keeps its round trips (room up to the timeout: none is longer).
fn round_trips_of_many(targets: usize, timeout_ns: u64) -> Compact {
    Compact {
        reserve_ns: timeout_ns,
        digits: if targets <= TWO_DIGITS_UP_TO { 2 } else { 1 },
    }
}

/// The address families whose socket options a socket bound at `local` needs set: its own, and
/// IPv4's too where an IPv6 socket serves both.
fn families(local: SocketAddr, both: bool) -> impl Iterator<Item = bool> {
    std::iter::once(local.is_ipv6()).chain((both && local.is_ipv6()).then_some(false))
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
