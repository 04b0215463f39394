//! The echo role (RFC 862): every datagram goes back, byte for byte, to its sender.
//!
//! It never sends more than it received: each echo is the received slice, sent once. A send the
//! kernel refuses (full buffer, unreachable sender) is counted and dropped, never retried in a
//! loop and never fatal: one slow client must not stop the server. With a [`crate::guard::Policy`], each
//! datagram first passes the [`Guard`] (loop protection, allow list, rate limits, authentication).

use crate::config::EchoConfig;
use crate::engine::{Role, Wake};
use crate::error::Error;
use crate::guard::Guard;
use crate::net;
use crate::summary::EchoSummary;
use crate::sys::MmsgBatch;
use crate::wire::{sockperf, Wire};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::collections::HashSet;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Distinct peers remembered for the `peers` count; beyond it the count stops growing, so a
/// flood of spoofed sources cannot grow memory.
pub const PEERS_LIMIT: usize = 65_536;
/// Receive errors tolerated back to back before the loop moves on.
const MAX_ERRORS_IN_A_ROW: u32 = 16;
/// Most slots one receive call fills.
const MAX_BATCH: usize = 64;

type StatsSink = Box<dyn FnMut(u64, EchoSummary) + Send>;

/// Adds up the counters of several echo sockets serving one address (`--threads`). Peers are
/// summed: `SO_REUSEPORT` keeps each peer on one socket.
pub fn merge(parts: &[EchoSummary]) -> EchoSummary {
    let mut total = parts.first().cloned().unwrap_or_default();
    for p in parts.iter().skip(1) {
        total.duration_ms = total.duration_ms.max(p.duration_ms);
        total.datagrams += p.datagrams;
        total.bytes += p.bytes;
        total.peers += p.peers;
        total.peers_limit += p.peers_limit;
        total.send_failed += p.send_failed;
        total.recv_errors += p.recv_errors;
        total.not_answered += p.not_answered;
        total.bytes_out += p.bytes_out;
        total.coalesced += p.coalesced;
        total.refused.add(&p.refused);
    }
    total
}

pub struct Echo {
    wire: Wire,
    socket: UdpSocket,
    local: SocketAddr,
    batch: MmsgBatch,
    /// Whether each datagram of the batch being served gets a reply.
    answers: Vec<bool>,
    peers: HashSet<SocketAddr>,
    last_peer: Option<SocketAddr>,
    summary: EchoSummary,
    guard: Guard,
    started: Instant,
    stopped: bool,
    /// Periodic counters (`--stats-interval`): period, next report, its index, where it goes.
    stats: Option<(Duration, Instant, u64, StatsSink)>,
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
            net::bind_shared(cfg.bind, cfg.buffers)?
        } else {
            net::bind_with(cfg.bind, cfg.buffers)?
        };
        let (rcvbuf_bytes, sndbuf_bytes) = crate::sys::granted_buffers(&socket).unwrap_or((0, 0));
        // Datagrams a GSO sender sent as one come in as one, and go back as one.
        let gro = cfg.gro && crate::sys::enable_gro(&socket);
        let guard = Guard::new(local, cfg.policy.clone());
        let policy = &cfg.policy;
        Ok(Self {
            wire: cfg.wire,
            socket,
            local,
            batch: MmsgBatch::new(),
            answers: Vec::new(),
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
                ..EchoSummary::default()
            },
            guard,
            started: Instant::now(),
            stopped: false,
            stats: None,
        })
    }

    /// Hands `sink` the counters so far every `period` (with the report's index).
    pub fn report_stats(
        &mut self,
        period: Duration,
        sink: impl FnMut(u64, EchoSummary) + Send + 'static,
    ) {
        self.stats = Some((period, Instant::now() + period, 0, Box::new(sink)));
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
            refused: self.guard.refused.clone(),
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

    /// Batched: one `recvmmsg` and one `sendmmsg` per batch of datagrams.
    fn serve(&mut self) {
        let mut errors_in_a_row = 0;
        loop {
            let n = match self.batch.receive(&self.socket) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.summary.recv_errors += 1;
                    errors_in_a_row += 1;
                    if errors_in_a_row >= MAX_ERRORS_IN_A_ROW {
                        return;
                    }
                    continue;
                }
            };
            errors_in_a_row = 0;
            debug_assert!(n <= MAX_BATCH);
            // Verdicts for every datagram of the batch, in order (a slot may hold several).
            let mut known = [false; MAX_BATCH];
            let mut answers = std::mem::take(&mut self.answers);
            answers.clear();
            let now = Instant::now();
            for (i, known) in known.iter_mut().enumerate().take(n) {
                let Some(meta) = self.batch.meta(i) else {
                    continue;
                };
                *known = true;
                self.note_peer(meta.from);
                let before = answers.len();
                for datagram in meta.datagrams(self.batch.payload(i)) {
                    self.summary.datagrams += 1;
                    self.summary.bytes += datagram.len() as u64;
                    answers.push(self.guard.admit(meta.from, datagram, now));
                }
                if meta.segment.is_some() {
                    self.summary.coalesced += (answers.len() - before) as u64;
                }
            }
            let (mut silent, mut bytes_out, mut next) = (0u64, 0u64, 0usize);
            let wire = self.wire;
            let refused = self.batch.reply_with(&self.socket, n, |slot, datagram| {
                if !known[slot] {
                    return None;
                }
                next += 1;
                if !answers[next - 1] {
                    return None;
                }
                let reply = match wire {
                    Wire::Sonde => Some(datagram.len()),
                    Wire::Sockperf => sockperf::server_reply(datagram),
                };
                silent += u64::from(reply.is_none());
                bytes_out += reply.unwrap_or(0) as u64;
                reply
            });
            self.answers = answers;
            self.summary.not_answered += silent;
            self.summary.send_failed += refused as u64;
            self.summary.bytes_out += bytes_out;
            if n < self.batch.capacity() {
                // The queue was empty: a new datagram raises a new event.
                return;
            }
        }
    }
}

impl Role for Echo {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.socket, first, Interest::READABLE)
    }

    fn ready(&mut self, _index: usize, event: &Event) -> Result<(), Error> {
        if event.is_readable() || event.is_error() {
            self.serve();
        }
        Ok(())
    }

    fn reads_directly(&self) -> bool {
        true
    }

    fn poll_sockets(&mut self) -> Result<bool, Error> {
        self.batch.set_adaptive(true);
        // The echo has nothing to do in `advance` because of a datagram.
        self.serve();
        Ok(false)
    }

    fn advance(&mut self, now: Instant) -> Result<Wake, Error> {
        let Some((period, next, index, _)) = self.stats.as_ref() else {
            return Ok(Wake::IDLE);
        };
        let (period, mut next, mut index) = (*period, *next, *index);
        if now >= next {
            let summary = self.summary();
            if let Some((_, _, _, sink)) = self.stats.as_mut() {
                sink(index, summary);
            }
            index += 1;
            next += period;
            if next <= now {
                next = now + period;
            }
        }
        if let Some(stats) = self.stats.as_mut() {
            stats.1 = next;
            stats.2 = index;
        }
        Ok(Wake::around(next))
    }

    fn stop(&mut self, _now: Instant, _hard: bool) {
        self.stopped = true;
    }

    fn is_client(&self) -> bool {
        false
    }

    fn is_done(&self) -> bool {
        self.stopped
    }
}
