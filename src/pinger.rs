//! The pinger role: sends sequenced probes on a schedule, matches replies, keeps score.
//!
//! One probe's path: schedule → encode ([`wire`]) → send → timeout armed in the [`Wheel`] →
//! reply received → decoded and checked against what was sent → classified by the [`InFlight`]
//! table → recorded in [`Latency`] and the counters → resolved probes, in sequence order, feed
//! the [`OutageTracker`].

use crate::config::{Pace, PingConfig};
use crate::engine::{Role, Wake};
use crate::error::Error;
use crate::inflight::{InFlight, ProbeState, Verdict};
use crate::interval::{IntervalClock, IntervalReport};
use crate::loss_pattern::LossPattern;
use crate::net;
use crate::outage::OutageTracker;
use crate::stats::{Jitter, Latency};
use crate::summary::{Counters, LagSummary, PingSummary, SocketSummary};
use crate::sys::{
    drain_error_queue, enable_gro, enable_icmp_errors, enable_rx_metadata, granted_buffers,
    socket_drops, MmsgBatch, SendBatch,
};
use crate::timer::Wheel;
use crate::wire::{self, sockperf, ProbeHeader, Wire};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Timer-wheel resolution for probe timeouts.
const TICK_NS: u64 = 100_000;
/// Most probes sent in one go before the loop looks at its sockets again.
const MAX_BURST: u32 = 256;
/// Probes per `sendmmsg`.
const SEND_BATCH: usize = 32;
/// Closed-loop mode sizes its sequence table as if probes could go out this fast.
const WINDOW_RATE_BOUND: f64 = 1_000_000.0;
/// Widest bracket of two realtime reads around a monotonic read that is trusted for converting
/// a kernel timestamp (reads take tens of ns; a preemption takes microseconds or more).
const CLOCK_PAIR_SPREAD: Duration = Duration::from_micros(2);
/// Upper bound on sequence-table slots (about 32 bytes each).
const MAX_TABLE: usize = 1 << 22;

/// What happened to one probe or datagram, as it happens: for per-probe output and exports.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeEvent {
    /// A faithful echo of probe `seq`.
    Reply {
        seq: u64,
        /// When the probe was due and when it left, ns since the run started.
        intended_ns: u64,
        sent_ns: u64,
        rtt_ns: u64,
        len: usize,
        kind: ReplyKind,
    },
    /// No reply by the timeout. `unreachable`: an ICMP error came back for it.
    Lost {
        seq: u64,
        intended_ns: u64,
        sent_ns: u64,
        unreachable: bool,
    },
    /// The send failed locally.
    NotSent {
        seq: u64,
        intended_ns: u64,
        sent_ns: u64,
        error: String,
    },
    /// From the target, but not an echo of a probe we sent.
    Mismatched {
        seq: Option<u64>,
        len: usize,
        reason: &'static str,
    },
    /// From elsewhere, or another run's session.
    Foreign { from: SocketAddr, len: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Received { reordered: bool },
    Late,
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Sending,
    Draining,
    Done,
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
    rtt: Latency,
    rtt_from_intended: Latency,
    lag: Latency,
    jitter: Jitter,
    outages: OutageTracker,
    loss_pattern: LossPattern,
    phase: Phase,
    epoch: Instant,
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
    socket_info: SocketSummary,
    /// The kernel stamps received datagrams (and they need converting to the monotonic clock).
    kernel_stamps: bool,
}

impl<'a> Pinger<'a> {
    /// Binds the pinger's socket. The config must have passed [`PingConfig::validate`].
    pub fn new(cfg: PingConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let bind = cfg.bind.unwrap_or_else(|| net::any_for(&cfg.target));
        let (socket, local) = net::bind_with(bind, cfg.buffers)?;
        // Best effort: without it a stopped server looks like silence rather than a refusal.
        let _ = enable_icmp_errors(&socket, cfg.target.is_ipv6());
        let (timestamps, _) = enable_rx_metadata(&socket, cfg.kernel_timestamps);
        let (rcvbuf_bytes, sndbuf_bytes) = granted_buffers(&socket).unwrap_or((0, 0));
        let mut send_batch = Box::new(SendBatch::new(SEND_BATCH, cfg.size, cfg.target));
        send_batch.set_gso(cfg.gso.applies_to(cfg.target));
        // Replies coalesced in one buffer share its receive time, as they arrived together.
        let gro = cfg.gro && enable_gro(&socket);
        let socket_info = SocketSummary {
            rcvbuf_bytes,
            sndbuf_bytes,
            rx_timestamps: if timestamps { "kernel" } else { "user space" },
            batching: "",
            gso_refused: None,
            gro,
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
        wire::fill_padding_after(&mut probe, cfg.header_len(), session);
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
            rtt: Latency::new(),
            rtt_from_intended: Latency::new(),
            lag: Latency::new(),
            jitter: Jitter::default(),
            outages: OutageTracker::default(),
            loss_pattern: LossPattern::default(),
            phase: Phase::Sending,
            epoch: Instant::now(),
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

    /// When probe number `index` is due, ns since the epoch.
    fn intended_ns(&self, index: u64, now_ns: u64) -> u64 {
        match self.cfg.pace {
            Pace::Rate(rate) => (index as f64 * 1e9 / rate) as u64,
            Pace::Window => now_ns,
        }
    }

    /// Whether the count or duration is used up for probe `index`, due at `intended_ns`.
    fn limit_reached(&self, index: u64, intended_ns: u64) -> bool {
        self.cfg.count.is_some_and(|n| index >= n)
            || self
                .cfg
                .duration
                .is_some_and(|d| intended_ns >= d.as_nanos() as u64)
    }

    /// Sends what the schedule says is due, in batches of one `sendmmsg`; returns when to come
    /// back.
    fn send_due(&mut self, now: Instant) -> Result<Wake, Error> {
        let now_ns = self.ns(now);
        let mut batch = self.send_batch.take().expect("send slots present");
        let mut intended = std::mem::take(&mut self.intended);
        let mut wake = Wake::exactly(now);
        let mut result = Ok(());
        for _ in 0..MAX_BURST {
            let index = self.table.next_seq() + intended.len() as u64;
            let intended_ns = self.intended_ns(index, now_ns);
            let stop = if self.limit_reached(index, intended_ns) {
                self.phase = Phase::Draining;
                self.send_end_ns = Some(intended_ns.min(now_ns));
                Some(Wake::IDLE)
            } else if intended_ns > now_ns {
                Some(Wake::exactly(
                    self.epoch + Duration::from_nanos(intended_ns),
                ))
            } else if self.write_blocked {
                // WRITABLE will wake us; check again soon in case the edge was missed.
                Some(Wake::around(now + Duration::from_millis(1)))
            } else if self.table.in_flight() + intended.len() >= self.inflight_max
                || !self.table.make_room_for(intended.len() as u64 + 1)
            {
                // A reply or a timeout frees room; in closed-loop mode mind the duration too.
                Some(match (self.cfg.pace, self.cfg.duration) {
                    (Pace::Window, Some(d)) => Wake::around(self.epoch + d),
                    _ => Wake::IDLE,
                })
            } else {
                None
            };
            if let Some(stop) = stop {
                wake = stop;
                break;
            }
            batch
                .push()
                .expect("batch has room")
                .copy_from_slice(&self.probe);
            intended.push(intended_ns);
            if intended.len() == batch.capacity() {
                result = self.flush(&mut batch, &mut intended);
                if result.is_err() || self.write_blocked {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.flush(&mut batch, &mut intended);
        }
        self.send_batch = Some(batch);
        self.intended = intended;
        result.map(|()| wake)
    }

    /// Stamps and sends the collected probes, then books each outcome in sequence order. A probe
    /// refused because of an earlier ICMP error is retried once; a full buffer stops the burst,
    /// and the probes after it are not sent (their sequence numbers are not used up).
    fn flush(&mut self, batch: &mut SendBatch, intended: &mut Vec<u64>) -> Result<(), Error> {
        let k = intended.len();
        if k == 0 {
            return Ok(());
        }
        let first = self.table.next_seq();
        let sent_ns = self.ns(Instant::now());
        for j in 0..k {
            self.encode(batch.slot_mut(j), first + j as u64, sent_ns);
        }
        let mut j = 0;
        while j < k {
            let mut refused = false;
            let outcome = match batch.send(&self.socket, j) {
                Ok(n) if n > 0 => {
                    for (t, &intended_ns) in intended.iter().enumerate().skip(j).take(n) {
                        self.record_sent(first + t as u64, sent_ns, intended_ns);
                    }
                    j += n;
                    continue;
                }
                Ok(_) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier probe surfaces on this send; once reported it is
                // cleared, so one retry sends this probe.
                Err(e) if net::is_unreachable(&e) && self.ever_sent => {
                    refused = true;
                    self.socket
                        .send_to(batch.slot(j), self.cfg.target)
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => self.record_sent(first + j as u64, sent_ns, intended[j]),
                Err(e) if !self.ever_sent && !net::is_local_congestion(&e) => {
                    // The very first probe could not leave: the address or route is wrong.
                    intended.clear();
                    batch.clear();
                    return Err(Error::io("send to", self.cfg.target, e));
                }
                Err(e) => {
                    self.record_failed(first + j as u64, sent_ns, intended[j], &e, refused);
                    if self.write_blocked {
                        // The probes after this one were not used up: they go out once the
                        // socket is writable again, even if the schedule just ran out.
                        if j + 1 < k && self.phase == Phase::Draining {
                            self.phase = Phase::Sending;
                            self.send_end_ns = None;
                        }
                        break;
                    }
                }
            }
            j += 1;
        }
        intended.clear();
        batch.clear();
        if let Some(progress) = &self.progress {
            progress.store(
                self.counters.sent + self.counters.not_sent,
                Ordering::Relaxed,
            );
        }
        Ok(())
    }

    fn encode(&self, buf: &mut [u8], seq: u64, sent_ns: u64) {
        match self.cfg.wire {
            Wire::Sonde => {
                ProbeHeader {
                    session: self.session,
                    seq,
                    send_ns: sent_ns,
                }
                .encode(buf);
                if let Some(key) = &self.cfg.key {
                    key.sign(buf);
                }
            }
            Wire::Sockperf => sockperf::Header {
                seq,
                flags: sockperf::FLAG_CLIENT | sockperf::FLAG_PONG_REQUEST,
                length: buf.len() as u32,
            }
            .encode(buf),
        }
    }

    fn record_sent(&mut self, seq: u64, sent_ns: u64, intended_ns: u64) {
        // A refusal met on the way is also on the error queue, which names its probe.
        let pushed = self.table.push(sent_ns, intended_ns, true);
        debug_assert_eq!(pushed, seq);
        let deadline = (sent_ns + self.timeout_ns).div_ceil(TICK_NS);
        self.timeouts.insert(deadline, seq);
        self.counters.sent += 1;
        self.ever_sent = true;
        self.peak_in_flight = self.peak_in_flight.max(self.table.in_flight());
        if matches!(self.cfg.pace, Pace::Rate(_)) {
            self.lag.record(sent_ns.saturating_sub(intended_ns));
        }
    }

    fn record_failed(
        &mut self,
        seq: u64,
        sent_ns: u64,
        intended_ns: u64,
        e: &io::Error,
        refused: bool,
    ) {
        let pushed = self.table.push(sent_ns, intended_ns, false);
        debug_assert_eq!(pushed, seq);
        if refused || net::is_unreachable(e) {
            self.table.mark_unreachable(seq);
        }
        self.write_blocked = e.kind() == io::ErrorKind::WouldBlock;
        self.counters.not_sent += 1;
        if self.observer.is_some() {
            self.emit(ProbeEvent::NotSent {
                seq,
                intended_ns,
                sent_ns,
                error: e.to_string(),
            });
        }
    }

    /// An ICMP error was reported; `seq` is the probe it names, when known.
    fn note_unreachable(&mut self, seq: Option<u64>) {
        self.counters.unreachable += 1;
        if let Some(seq) = seq {
            self.table.mark_unreachable(seq);
        }
    }

    /// When a datagram arrived, ns since the epoch: the kernel's receive timestamp where there is
    /// one, so that time spent queued in the socket (or in a batch) is not counted.
    fn arrival_ns(&self, clock: &ClockPair, kernel_rx: Option<Duration>) -> u64 {
        let mono_ns = self.ns(clock.mono);
        match (clock.real, kernel_rx) {
            (Some((before, after)), Some(kernel_rx)) => {
                match kernel_arrival(mono_ns, before, after, kernel_rx) {
                    Paired::Arrival(ns) => ns,
                    Paired::Retry | Paired::Unusable => mono_ns,
                }
            }
            _ => mono_ns,
        }
    }

    /// Reads what has arrived; returns how many buffers that was.
    fn receive(&mut self) -> Result<usize, Error> {
        let mut batch = self.batch.take().expect("receive slots present");
        let result = self.receive_batches(&mut batch);
        self.batch = Some(batch);
        result
    }

    fn receive_batches(&mut self, batch: &mut MmsgBatch) -> Result<usize, Error> {
        let mut total = 0;
        loop {
            let n = match batch.receive(&self.socket) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A pending ICMP error reported on receive; the error queue names the probe.
                Err(e) if net::is_unreachable(&e) => continue,
                Err(e) => return Err(Error::io("receive on", self.local, e)),
            };
            total += n;
            // One clock pairing serves the whole batch: each datagram's own kernel stamp places it.
            let clock = ClockPair::read(self.kernel_stamps);
            for i in 0..n {
                let Some(meta) = batch.meta(i) else { continue };
                if let Some(drops) = meta.drops {
                    // A running total since the socket was opened.
                    self.counters.local_drops = self.counters.local_drops.max(drops.into());
                }
                let at_ns = self.arrival_ns(&clock, meta.kernel_rx);
                for datagram in meta.datagrams(batch.payload(i)) {
                    self.on_datagram(datagram, meta.from, at_ns);
                }
            }
            if n < batch.capacity() {
                // The queue was empty: a new reply raises a new event (no call to see EAGAIN).
                return Ok(total);
            }
            if self.phase == Phase::Sending {
                // More replies wait: refill the window with what this batch freed first, so the
                // echo works on those while this loop reads the rest.
                self.send_due(Instant::now())?;
            }
        }
    }

    fn drain_icmp(&mut self) {
        let session = self.session;
        let mut named = Vec::new();
        let _ = drain_error_queue(&self.socket, |_, original| {
            let seq = ProbeHeader::decode(original)
                .ok()
                .filter(|h| h.session == session)
                .map(|h| h.seq);
            named.push(seq);
        });
        for seq in named {
            self.note_unreachable(seq);
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr, now_ns: u64) {
        let len = data.len();
        if from != self.cfg.target {
            self.counters.foreign += 1;
            self.emit(ProbeEvent::Foreign { from, len });
            return;
        }
        // The sequence number, and the send time the reply carries where the format has one.
        let (seq, stamp) = match self.cfg.wire {
            Wire::Sonde => {
                let header = match ProbeHeader::decode(data) {
                    Ok(h) => h,
                    Err(_) => return self.mismatched(None, len, "not a sonde probe"),
                };
                if header.session != self.session {
                    self.counters.foreign += 1;
                    self.emit(ProbeEvent::Foreign { from, len });
                    return;
                }
                if self.cfg.key.as_ref().is_some_and(|key| !key.verify(data)) {
                    return self.mismatched(Some(header.seq), len, "authentication failed");
                }
                (header.seq, Some(header.send_ns))
            }
            Wire::Sockperf => match sockperf::Header::decode(data) {
                Some(h)
                    if h.flags & sockperf::FLAG_CLIENT == 0
                        && h.flags & sockperf::FLAG_PONG_REQUEST != 0 =>
                {
                    (h.seq, None)
                }
                _ => return self.mismatched(None, len, "not a sockperf reply"),
            },
        };
        let Some(slot) = self.table.get(seq).copied() else {
            return match self.table.on_reply(seq, now_ns, self.timeout_ns) {
                Verdict::Stale => self.counters.stale += 1,
                _ => self.mismatched(Some(seq), len, "sequence number never sent"),
            };
        };
        if slot.state != ProbeState::NotSent {
            let header_len = self.cfg.header_len();
            let faithful = len == self.probe.len()
                && stamp.is_none_or(|sent| sent == slot.sent_ns)
                && data[header_len..] == self.probe[header_len..];
            if !faithful {
                let reason = if len < self.probe.len() {
                    "truncated"
                } else {
                    "altered"
                };
                return self.mismatched(Some(seq), len, reason);
            }
        }
        let rtt_ns = now_ns.saturating_sub(slot.sent_ns);
        let kind = match self.table.on_reply(seq, now_ns, self.timeout_ns) {
            Verdict::Received { reordered } => {
                self.counters.received += 1;
                self.counters.reordered += u64::from(reordered);
                self.rtt.record(rtt_ns);
                self.jitter.record(rtt_ns);
                if let Some((clock, _)) = self.intervals.as_mut() {
                    clock.record_rtt(rtt_ns);
                }
                if matches!(self.cfg.pace, Pace::Rate(_)) {
                    self.rtt_from_intended
                        .record(now_ns.saturating_sub(slot.intended_ns));
                }
                ReplyKind::Received { reordered }
            }
            Verdict::Late => {
                if slot.state == ProbeState::Lost {
                    self.counters.lost -= 1;
                }
                self.counters.late += 1;
                ReplyKind::Late
            }
            Verdict::Duplicate => {
                self.counters.duplicates += 1;
                ReplyKind::Duplicate
            }
            Verdict::NeverSent => return self.mismatched(Some(seq), len, "probe was never sent"),
            Verdict::Stale => {
                self.counters.stale += 1;
                return;
            }
        };
        self.emit(ProbeEvent::Reply {
            seq,
            intended_ns: slot.intended_ns,
            sent_ns: slot.sent_ns,
            rtt_ns,
            len,
            kind,
        });
    }

    fn mismatched(&mut self, seq: Option<u64>, len: usize, reason: &'static str) {
        self.counters.mismatched += 1;
        self.emit(ProbeEvent::Mismatched { seq, len, reason });
    }

    /// Fires due timeouts and hands resolved probes, in order, to the outage tracker.
    fn expire(&mut self, now_ns: u64) {
        while let Some(seq) = self.timeouts.poll(now_ns / TICK_NS) {
            if let Some(slot) = self.table.on_timeout(seq) {
                self.counters.lost += 1;
                self.timeouts_fired += 1;
                self.emit(ProbeEvent::Lost {
                    seq,
                    intended_ns: slot.intended_ns,
                    sent_ns: slot.sent_ns,
                    unreachable: slot.unreachable,
                });
            }
        }
        while let Some(slot) = self.table.pop_resolved() {
            self.outages.observe(&slot);
            self.loss_pattern.observe(&slot);
        }
    }

    fn finish(&mut self, now_ns: u64) {
        self.phase = Phase::Done;
        self.end_ns = Some(now_ns);
        self.send_end_ns.get_or_insert(now_ns);
        self.close_intervals(now_ns, true);
    }

    /// Reports every period that has ended by `now_ns`; at the end of the run, the last partial
    /// one too.
    fn close_intervals(&mut self, now_ns: u64, end: bool) {
        let Some((clock, sink)) = self.intervals.as_mut() else {
            return;
        };
        while clock.boundary_ns() <= now_ns {
            let boundary = clock.boundary_ns();
            sink(clock.close(boundary, &self.counters, self.timeouts_fired));
        }
        if end && now_ns > clock.start_ns() {
            sink(clock.close(now_ns, &self.counters, self.timeouts_fired));
        }
    }

    /// Everything measured so far (complete once the engine has finished the run).
    pub fn summary(&self) -> PingSummary {
        let end_ns = self.end_ns.unwrap_or_else(|| self.ns(Instant::now()));
        let rate = match self.cfg.pace {
            Pace::Rate(rate) => Some(rate),
            Pace::Window => None,
        };
        let schedule_lag = rate.and(self.lag.summary()).map(|l| LagSummary {
            mean_us: l.mean_us,
            p99_us: l.p99_us,
            max_us: l.max_us,
        });
        let mut counters = self.counters.clone();
        if let Some(drops) = socket_drops(&self.socket) {
            counters.local_drops = counters.local_drops.max(drops.into());
        }
        PingSummary {
            target: self.cfg.target.to_string(),
            local: self.local.to_string(),
            session: format!("{:016x}", self.session),
            mode: if rate.is_some() { "rate" } else { "window" },
            rate_pps: rate,
            inflight_max: self.inflight_max,
            peak_in_flight: self.peak_in_flight,
            size_bytes: self.cfg.size,
            timeout_ms: self.cfg.timeout.as_secs_f64() * 1e3,
            duration_s: end_ns as f64 / 1e9,
            interrupted: self.interrupted,
            loss_pct: counters.loss_pct(),
            counters,
            rtt: self.rtt.summary(),
            jitter_us: self.jitter.us(),
            rtt_from_intended: rate.and(self.rtt_from_intended.summary()),
            schedule_lag,
            loss_bursts: self.loss_pattern.summary(),
            socket: self.socket_summary(),
            flows: Vec::new(),
            outages: self
                .outages
                .clone()
                .finish(self.send_end_ns.unwrap_or(end_ns)),
        }
    }

    fn socket_summary(&self) -> SocketSummary {
        let batch = self.send_batch.as_deref();
        SocketSummary {
            batching: match batch {
                Some(b) if b.gso_runs() > 0 => "gso",
                _ if cfg!(target_os = "linux") => "sendmmsg",
                _ => "send_to",
            },
            gso_refused: batch.and_then(|b| b.gso_refused()).map(ToString::to_string),
            ..self.socket_info.clone()
        }
    }

    /// The latency distribution of received probes, for merging or export.
    pub fn rtt(&self) -> &Latency {
        &self.rtt
    }
}

/// One summary over several flows: counters added, histograms merged (so percentiles are those of
/// all probes together), loss bursts and outages combined; each flow's own summary in `flows`.
pub fn combine(pingers: &[&Pinger]) -> PingSummary {
    let mut flows: Vec<PingSummary> = pingers.iter().map(|p| p.summary()).collect();
    if flows.len() <= 1 {
        return flows.pop().expect("at least one flow");
    }
    let (mut rtt, mut intended, mut lag) = (Latency::new(), Latency::new(), Latency::new());
    for p in pingers {
        rtt.merge(&p.rtt);
        intended.merge(&p.rtt_from_intended);
        lag.merge(&p.lag);
    }
    let mut total = flows[0].clone();
    total.counters = Counters::default();
    let (mut burst_lost, mut distance_weight) = (0.0, 0.0);
    total.loss_bursts.count = 0;
    total.loss_bursts.max_length = 0;
    let mut jitters = Vec::new();
    total.outages.clear();
    for f in &flows[1..] {
        total.rate_pps = total.rate_pps.zip(f.rate_pps).map(|(a, b)| a + b);
        total.inflight_max += f.inflight_max;
        total.peak_in_flight += f.peak_in_flight;
        total.duration_s = total.duration_s.max(f.duration_s);
        total.interrupted |= f.interrupted;
    }
    for f in &flows {
        total.counters.add(&f.counters);
        let b = &f.loss_bursts;
        total.loss_bursts.count += b.count;
        total.loss_bursts.max_length = total.loss_bursts.max_length.max(b.max_length);
        burst_lost += b.count as f64 * b.mean_length;
        distance_weight += b.count as f64 * b.mean_distance;
        jitters.extend(f.jitter_us);
        total.outages.extend(f.outages.iter().cloned());
    }
    let bursts = total.loss_bursts.count as f64;
    total.loss_bursts.mean_length = if bursts > 0.0 {
        burst_lost / bursts
    } else {
        0.0
    };
    total.loss_bursts.mean_distance = if bursts > 0.0 {
        distance_weight / bursts
    } else {
        0.0
    };
    total
        .outages
        .sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    total.local = format!("{} flows", flows.len());
    total.session = flows
        .iter()
        .map(|f| f.session.as_str())
        .collect::<Vec<_>>()
        .join(",");
    total.loss_pct = total.counters.loss_pct();
    total.rtt = rtt.summary();
    // Jitter is a per-stream quantity: the total reports the mean of the flows'.
    total.jitter_us =
        (!jitters.is_empty()).then(|| jitters.iter().sum::<f64>() / jitters.len() as f64);
    let rate_mode = total.rate_pps.is_some();
    total.rtt_from_intended = if rate_mode { intended.summary() } else { None };
    total.schedule_lag = if rate_mode {
        lag.summary().map(|l| LagSummary {
            mean_us: l.mean_us,
            p99_us: l.p99_us,
            max_us: l.max_us,
        })
    } else {
        None
    };
    total.flows = flows;
    total
}

/// The round-trip times of several flows in one distribution.
pub fn merged_rtt(pingers: &[&Pinger]) -> Latency {
    let mut rtt = Latency::new();
    for p in pingers {
        rtt.merge(&p.rtt);
    }
    rtt
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
            self.epoch = now;
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

/// A monotonic read bracketed by two realtime reads (`real`: `None` when no tight bracket could
/// be had, the wall clock having stepped or the thread been preempted each time).
struct ClockPair {
    mono: Instant,
    real: Option<(Duration, Duration)>,
}

impl ClockPair {
    /// A monotonic read, bracketed by realtime reads only if `kernel_stamps` need converting.
    fn read(kernel_stamps: bool) -> Self {
        let realtime = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        let mut mono = Instant::now();
        if !kernel_stamps {
            return Self { mono, real: None };
        }
        for _ in 0..3 {
            let before = realtime();
            mono = Instant::now();
            let after = realtime();
            if after
                .checked_sub(before)
                .is_some_and(|spread| spread <= CLOCK_PAIR_SPREAD)
            {
                return Self {
                    mono,
                    real: Some((before, after)),
                };
            }
        }
        Self { mono, real: None }
    }
}

/// The outcome of converting a kernel timestamp with one clock pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paired {
    /// The arrival, ns on the monotonic clock.
    Arrival(u64),
    /// The realtime reads were too far apart (preempted): pair again.
    Retry,
    /// The wall clock stepped: use user-space time.
    Unusable,
}

/// Converts a CLOCK_REALTIME kernel receive stamp to the monotonic clock, given a monotonic read
/// `mono_ns` taken between the realtime reads `before` and `after`.
fn kernel_arrival(mono_ns: u64, before: Duration, after: Duration, kernel_rx: Duration) -> Paired {
    let Some(spread) = after.checked_sub(before) else {
        return Paired::Unusable;
    };
    if spread > CLOCK_PAIR_SPREAD {
        return Paired::Retry;
    }
    match (before + spread / 2).checked_sub(kernel_rx) {
        // Over a second of queueing means the wall clock stepped.
        Some(queued) if queued < Duration::from_secs(1) => {
            Paired::Arrival(mono_ns.saturating_sub(queued.as_nanos() as u64))
        }
        _ => Paired::Unusable,
    }
}

/// A per-run id (and default seed): random enough that two runs on one host never share one.
pub fn random_session() -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1_700_000_000);
    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn queueing_delay_comes_off_the_monotonic_read() {
        // Datagram stamped 30 us before the (tight) pairing at monotonic 1 ms.
        let got = kernel_arrival(1_000_000, S + us(100), S + us(101), S + us(70));
        assert_eq!(got, Paired::Arrival(1_000_000 - 30_500));
    }

    #[test]
    fn a_preempted_pairing_is_retried_not_trusted() {
        assert_eq!(
            kernel_arrival(1_000_000, S, S + us(50), S - us(10)),
            Paired::Retry
        );
    }

    #[test]
    fn clock_steps_make_the_stamp_unusable() {
        // Wall clock stepped back between the reads.
        assert_eq!(kernel_arrival(5, S + us(10), S, S), Paired::Unusable);
        // Stamp from the future (clock stepped back since) or from over a second ago.
        assert_eq!(kernel_arrival(5, S, S, S + us(10)), Paired::Unusable);
        assert_eq!(
            kernel_arrival(5, S, S, S - Duration::from_secs(2)),
            Paired::Unusable
        );
    }
}
