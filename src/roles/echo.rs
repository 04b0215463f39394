//! The echo role (RFC 862): every datagram goes back, byte for byte, to its sender.
//!
//! It never sends more than it received: each echo is the received slice, sent once. A send the
//! kernel refuses (full buffer, unreachable sender) is counted and dropped, never retried in a
//! loop and never fatal: one slow client must not stop the server. With a [`Policy`](crate::config::Policy), each
//! datagram first passes the [`Guard`] (loop protection, allow list, rate limits, authentication).

use super::guard::Guard;
use super::service::{Next, Service};
use super::socket;
use super::stamp::{host_clock, Answer, Arrival, Sealer, StampReflector};
use crate::config::{DscpReply, EchoConfig, Policy};
use crate::engine::{Role, Waited, Wake};
use crate::error::Error;
use crate::model::summary::TosCounts;
use crate::model::{EchoSummary, ReceivedTos, Refusals};
use crate::sys::MmsgBatch;
use crate::wire::Wire;
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Distinct peers remembered for the `peers` count; beyond it the count stops growing, so a
/// flood of spoofed sources cannot grow memory.
pub(crate) const PEERS_LIMIT: usize = 65_536;
/// Most slots one receive call fills.
const MAX_BATCH: usize = 64;

type StatsSink = Box<dyn FnMut(u64, EchoSummary) + Send>;

/// Periodic counters (`--stats-interval`).
struct StatsReports {
    period: Duration,
    /// When the next report is due, and its index.
    next: Instant,
    index: u64,
    sink: StatsSink,
}

/// What answers a datagram once the guard has let it through.
enum Answerer {
    /// A stateless format: the echo, or sockperf's server.
    Plain(Wire),
    /// A STAMP Session-Reflector (with its session table when stateful).
    Stamp(Box<StampReflector>),
}

pub struct Echo {
    answerer: Answerer,
    /// A STAMP reflector's last touches of each answer (T3, the HMAC).
    sealer: Option<Sealer>,
    /// STAMP test packets whose HMAC did not check out (the guard counts the other refusals).
    stamp_auth_failed: u64,
    /// The last batch read was one datagram (a ping-pong's; see `Waited::Read`).
    lone_read: bool,
    socket: UdpSocket,
    local: SocketAddr,
    batch: MmsgBatch,
    /// Whether each datagram of the batch being served gets a reply.
    answers: Vec<bool>,
    /// Where each slot of the batch being served came from.
    arrivals: Vec<Option<Arrival>>,
    peers: HashSet<SocketAddr>,
    last_peer: Option<SocketAddr>,
    summary: EchoSummary,
    guard: Guard,
    started: Instant,
    service: Service,
    stats: Option<StatsReports>,
    /// With `--report-tos` or `--dscp-reply keep`: the DSCP and ECN datagrams arrived with.
    tos_seen: Option<Box<TosCounts>>,
}

impl Echo {
    /// Binds the echo socket on `bind`, with the default buffers.
    pub fn bind(bind: SocketAddr) -> Result<Self, Error> {
        Self::with_config(&EchoConfig {
            bind,
            ..EchoConfig::default()
        })
    }

    pub fn with_config(cfg: &EchoConfig) -> Result<Self, Error> {
        let (socket, local) = if cfg.reuse_port {
            socket::bind_shared(cfg.bind, cfg.buffers)?
        } else {
            socket::bind_with(cfg.bind, cfg.buffers)?
        };
        let (rcvbuf_bytes, sndbuf_bytes) = crate::sys::granted_buffers(&socket).unwrap_or((0, 0));
        // Datagrams a GSO sender sent as one come in as one, and go back as one.
        let gro = cfg.gro && crate::sys::enable_gro(&socket);
        let policy = &cfg.policy;
        let (answerer, guard) = match cfg.wire {
            Wire::Stamp(_) => {
                // T2 from the kernel's receive stamp, and the TTL each test packet arrived with
                // (its TOS only once a Class of Service TLV asks for it).
                let _ = crate::sys::enable_rx_metadata(&socket, true, true);
                let _ = crate::sys::enable_recv_ttl(&socket, local.is_ipv6());
                // The key is STAMP's HMAC, checked by the reflector, not sonde's tag.
                let reflector = StampReflector::new(policy.key.clone(), cfg.stateful, host_clock());
                let unkeyed = Policy {
                    key: None,
                    ..policy.clone()
                };
                (
                    Answerer::Stamp(Box::new(reflector)),
                    Guard::new(local, unkeyed),
                )
            }
            wire => (Answerer::Plain(wire), Guard::new(local, policy.clone())),
        };
        // Bound to a wildcard address, answer from the address each datagram was sent to: a
        // pinger aiming at a secondary address would otherwise see every answer come from
        // another (the routing's choice), and count it foreign.
        let mut batch = MmsgBatch::new();
        let reply_from_destination = local.ip().is_unspecified()
            && crate::sys::enable_recv_destination(&socket, local.is_ipv6());
        batch.set_reply_from_destination(reply_from_destination);
        let mut answerer = answerer;
        let tos_seen = set_up_tos(&socket, local, cfg, &mut batch)?;
        if let (Answerer::Stamp(reflector), Some(_)) = (&mut answerer, &tos_seen) {
            reflector.tos_reports(true);
        }
        // No receive option on: a lone datagram is read without a message header.
        let plain = matches!(answerer, Answerer::Plain(_));
        batch.set_control_messages(!plain || gro || reply_from_destination || tos_seen.is_some());
        let sealer = match &answerer {
            Answerer::Stamp(reflector) => Some(reflector.sealer()),
            Answerer::Plain(_) => None,
        };
        Ok(Self {
            answerer,
            sealer,
            stamp_auth_failed: 0,
            lone_read: false,
            socket,
            local,
            batch,
            answers: Vec::new(),
            arrivals: Vec::with_capacity(MAX_BATCH),
            peers: HashSet::new(),
            last_peer: None,
            summary: EchoSummary {
                bind: local.to_string(),
                peers_limit: PEERS_LIMIT as u64,
                rcvbuf_bytes,
                sndbuf_bytes,
                allow: policy.allow.iter().map(ToString::to_string).collect(),
                per_source_limit_pps: policy.per_source.map(|l| l.rate),
                total_limit_pps: policy.total.map(|l| l.rate),
                authenticated: policy.key.is_some(),
                gro,
                dscp_reply: cfg.dscp_reply.map(|d| match d {
                    DscpReply::Keep => "keep".to_string(),
                    DscpReply::Fixed(dscp) => dscp.to_string(),
                }),
                ..EchoSummary::default()
            },
            guard,
            started: Instant::now(),
            service: Service::default(),
            stats: None,
            tos_seen,
        })
    }

    /// Hands `sink` the counters so far every `period` (with the report's index).
    pub fn report_stats(
        &mut self,
        period: Duration,
        sink: impl FnMut(u64, EchoSummary) + Send + 'static,
    ) {
        self.stats = Some(StatsReports {
            period,
            next: Instant::now() + period,
            index: 0,
            sink: Box::new(sink),
        });
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn summary(&self) -> EchoSummary {
        debug_assert!(self.summary.bytes_out <= self.summary.bytes);
        EchoSummary {
            duration_ms: self.started.elapsed().as_millis() as u64,
            peers: self.peers.len() as u64,
            recv_errors: self.service.receive_errors(),
            local_drops: crate::sys::socket_drops(&self.socket).map_or(0, u64::from),
            refused: Refusals {
                auth_failed: self.guard.refused.auth_failed + self.stamp_auth_failed,
                ..self.guard.refused.clone()
            },
            stamp_tlvs: match &self.answerer {
                Answerer::Stamp(reflector) => Some(reflector.tlv_counts),
                Answerer::Plain(_) => None,
            },
            received_tos: self.tos_seen.as_deref().map(ReceivedTos::of),
            ..self.summary.clone()
        }
    }

    fn note_peer(&mut self, from: SocketAddr) {
        // Datagrams come in runs from one peer: hash only when the sender changes (the set's
        // hashing was a third of the echo's own work per datagram).
        if self.last_peer != Some(from) && self.peers.len() < PEERS_LIMIT {
            self.peers.insert(from);
            self.last_peer = Some(from);
        }
    }

    /// Counts the first `n` received slots and asks the guard about each of their datagrams:
    /// the verdicts, in order (a slot may hold several); `known` marks the slots from an
    /// address family we know. A STAMP reflector's `arrivals` get what it needs of each slot.
    fn admit_batch(&mut self, n: usize, now: Instant, known: &mut [bool; MAX_BATCH]) -> Vec<bool> {
        let mut answers = std::mem::take(&mut self.answers);
        answers.clear();
        let stamp = matches!(self.answerer, Answerer::Stamp(_));
        self.arrivals.clear();
        if stamp {
            self.arrivals.resize(n, None);
        }
        for (i, known) in known.iter_mut().enumerate().take(n) {
            let Some(meta) = self.batch.meta(i) else {
                continue;
            };
            *known = true;
            if stamp {
                self.arrivals[i] = Some(Arrival::of(meta));
            }
            self.note_peer(meta.from);
            let before = answers.len();
            for datagram in meta.datagrams(self.batch.payload(i)) {
                self.summary.datagrams += 1;
                self.summary.bytes += datagram.len() as u64;
                answers.push(self.guard.admit(meta.from, datagram, now));
            }
            let datagrams = answers.len() - before;
            if meta.segment.is_some() {
                self.summary.coalesced += datagrams as u64;
            }
            if let (Some(seen), Some(tos)) = (self.tos_seen.as_deref_mut(), meta.tos) {
                for _ in 0..datagrams {
                    seen.record(tos >> 2, tos & 0b11);
                }
            }
        }
        answers
    }

    /// Answers slot 0 when it is one datagram of a plain format, with nothing to tally beyond
    /// the counters: a batch's steps without its vectors (ping-pong's case, where they were
    /// most of the echo's own work). False leaves the slot to the batch path.
    fn serve_single(&mut self) -> bool {
        let Answerer::Plain(wire) = self.answerer else {
            return false;
        };
        let Some(meta) = self.batch.meta(0) else {
            return false;
        };
        if meta.segment.is_some() || self.tos_seen.is_some() {
            return false;
        }
        self.note_peer(meta.from);
        self.summary.datagrams += 1;
        self.summary.bytes += meta.len as u64;
        let payload = self.batch.payload(0);
        if !self.guard.admit_now(meta.from, payload) {
            return true;
        }
        match self.batch.reply_single(&self.socket, |d| wire.reflect(d)) {
            Some((len, refused)) => {
                self.summary.bytes_out += len as u64;
                self.summary.send_failed += u64::from(refused);
            }
            None => self.summary.not_answered += 1,
        }
        true
    }

    /// Batched: one `recvmmsg` and one `sendmmsg` per batch of datagrams. The first read waits
    /// for a datagram when `wait` (on a socket set up to: [`Role::wait_in_reads`]); says
    /// whether any came.
    fn serve(&mut self, wait: bool) -> bool {
        let mut first = true;
        loop {
            let received = self.batch.receive(&self.socket, first && wait);
            // An interrupted wait ends the read: the loop has a signal to look at.
            let interrupted = received
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::Interrupted);
            let came = !first;
            first = false;
            let n = match self.service.judge(received) {
                Next::Handle(0) | Next::Wait => return came,
                Next::Retry if interrupted && wait => return came,
                Next::Handle(n) => n,
                Next::Retry => continue,
            };
            debug_assert!(n <= MAX_BATCH);
            self.lone_read = n == 1 && self.serve_single();
            if self.lone_read {
                if wait || self.batch.capacity() > 1 {
                    return true;
                }
                continue;
            }
            let now = Instant::now();
            let mut known = [false; MAX_BATCH];
            let answers = self.admit_batch(n, now, &mut known);
            let arrivals = std::mem::take(&mut self.arrivals);
            let (mut silent, mut auth_failed, mut bytes_out, mut next) = (0u64, 0u64, 0u64, 0);
            let answerer = &mut self.answerer;
            let sealer = &mut self.sealer;
            if let Some(sealer) = sealer.as_mut() {
                sealer.next_batch();
            }
            let decide = |slot: usize, datagram: &mut [u8]| {
                if !known[slot] {
                    return None;
                }
                next += 1;
                if !answers[next - 1] {
                    return None;
                }
                let reply = match answerer {
                    Answerer::Plain(wire) => wire.reflect(datagram),
                    Answerer::Stamp(reflector) => {
                        let a = arrivals[slot].as_ref()?;
                        match reflector.answer(datagram, a, now) {
                            Answer::Reply(len) => Some(len),
                            Answer::NotStamp => None,
                            Answer::AuthFailed => {
                                // A refusal, counted with the guard's, not as unanswered.
                                auth_failed += 1;
                                return None;
                            }
                        }
                    }
                };
                silent += u64::from(reply.is_none());
                bytes_out += reply.unwrap_or(0) as u64;
                reply
            };
            // Only a STAMP reflector seals its answers; the plain echo's pass is empty, and the
            // compiler drops it.
            let refused = match sealer {
                Some(sealer) => self
                    .batch
                    .reply_with(&self.socket, n, decide, |answer| sealer.seal(answer)),
                None => self.batch.reply_with(&self.socket, n, decide, |_| {}),
            };
            if let Answerer::Stamp(reflector) = &mut self.answerer {
                if reflector.wants_tos() {
                    let ipv6 = self.local.is_ipv6();
                    reflector.tos_reports(crate::sys::enable_recv_tos(&self.socket, ipv6));
                }
            }
            self.answers = answers;
            self.arrivals = arrivals;
            self.summary.not_answered += silent;
            self.stamp_auth_failed += auth_failed;
            self.summary.send_failed += refused as u64;
            self.summary.bytes_out += bytes_out;
            if wait || n < self.batch.capacity() {
                // Waiting in reads, the next wait reads the rest. Otherwise the queue was
                // empty: a new datagram raises a new event.
                return true;
            }
        }
    }
}

/// `--dscp-reply` and `--report-tos`: a fixed answer DSCP set on the socket; the requests' TOS
/// read where it is counted or kept (and then the tally to keep it in).
fn set_up_tos(
    socket: &UdpSocket,
    local: SocketAddr,
    cfg: &EchoConfig,
    batch: &mut MmsgBatch,
) -> Result<Option<Box<TosCounts>>, Error> {
    let ipv6 = local.is_ipv6();
    if let Some(DscpReply::Fixed(dscp)) = cfg.dscp_reply {
        crate::sys::set_tos(socket, ipv6, dscp << 2)
            .map_err(|e| Error::io("set the answers' DSCP (--dscp-reply) on", local, e))?;
    }
    let keep = cfg.dscp_reply == Some(DscpReply::Keep);
    if !(cfg.report_tos || keep) {
        return Ok(None);
    }
    if !crate::sys::enable_recv_tos(socket, ipv6) {
        let refused = io::Error::new(io::ErrorKind::Unsupported, "not on this platform");
        let what = "read the TOS of datagrams (--report-tos, --dscp-reply keep) on";
        return Err(Error::io(what, local, refused));
    }
    batch.set_reply_with_request_dscp(keep);
    Ok(Some(Box::default()))
}

impl Role for Echo {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.socket, first, Interest::READABLE)
    }

    fn ready(&mut self, _index: usize, event: &Event) -> Result<(), Error> {
        if event.is_readable() || event.is_error() {
            self.serve(false);
        }
        Ok(())
    }

    fn reads_directly(&self) -> bool {
        true
    }

    fn register_spinning(&mut self, _: &Registry, _: Token) -> io::Result<()> {
        // Nothing: `poll_sockets` reads the socket on every turn.
        Ok(())
    }

    fn poll_sockets(&mut self) -> Result<bool, Error> {
        self.batch.set_adaptive(true);
        // The echo has nothing to do in `advance` because of a datagram.
        self.serve(false);
        Ok(false)
    }

    fn wait_in_reads(&mut self, cap: Option<Duration>) -> bool {
        // Each wait reads once (the next wait reads the rest), asking for as many datagrams
        // as came last time: a lone one costs the kernel one message header, not two.
        self.batch.set_adaptive(true);
        crate::sys::wait_in_reads(&self.socket, cap).is_ok()
    }

    fn watch(&mut self, registry: &Registry, first: Token, on: bool) -> io::Result<()> {
        match on {
            true => self.register(registry, first),
            false => registry.deregister(&mut self.socket),
        }
    }

    fn read_waiting(&mut self) -> Result<Waited, Error> {
        Ok(match self.serve(true) {
            true => Waited::Read {
                due: false,
                lone: self.lone_read,
            },
            false => Waited::Nothing,
        })
    }

    fn advance(&mut self, now: Instant) -> Result<Wake, Error> {
        let Some(due) = self.stats.as_ref().map(|s| now >= s.next) else {
            return Ok(Wake::IDLE);
        };
        let summary = due.then(|| self.summary());
        let stats = self.stats.as_mut().expect("checked above");
        if let Some(summary) = summary {
            (stats.sink)(stats.index, summary);
            stats.index += 1;
            stats.next += stats.period;
            if stats.next <= now {
                stats.next = now + stats.period;
            }
        }
        Ok(Wake::around(stats.next))
    }

    fn stop(&mut self, _now: Instant, _hard: bool) {
        self.service.stop();
    }

    fn is_client(&self) -> bool {
        false
    }

    fn is_done(&self) -> bool {
        self.service.is_done()
    }
}
