//! The echo role (RFC 862): every datagram goes back, byte for byte, to its sender.
//!
//! It never sends more than it received: each echo is the received slice, sent once. A send the
//! kernel refuses (full buffer, unreachable sender) is counted and dropped, never retried in a
//! loop and never fatal: one slow client must not stop the server.

use crate::config::EchoConfig;
use crate::engine::{Role, Wake};
use crate::error::Error;
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
use std::time::Instant;

/// Distinct peers remembered for the `peers` count; beyond it the count stops growing, so a
/// flood of spoofed sources cannot grow memory.
pub const PEERS_LIMIT: usize = 65_536;
/// Receive errors tolerated back to back before the loop moves on.
const MAX_ERRORS_IN_A_ROW: u32 = 16;

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
    }
    total
}

pub struct Echo {
    wire: Wire,
    socket: UdpSocket,
    local: SocketAddr,
    batch: MmsgBatch,
    peers: HashSet<SocketAddr>,
    summary: EchoSummary,
    started: Instant,
    stopped: bool,
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
        Ok(Self {
            wire: cfg.wire,
            socket,
            local,
            batch: MmsgBatch::new(),
            peers: HashSet::new(),
            summary: EchoSummary {
                bind: local.to_string(),
                peers_limit: PEERS_LIMIT as u64,
                rcvbuf_bytes,
                sndbuf_bytes,
                ..EchoSummary::default()
            },
            started: Instant::now(),
            stopped: false,
        })
    }

    /// The address actually bound (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn summary(&self) -> EchoSummary {
        EchoSummary {
            duration_ms: self.started.elapsed().as_millis() as u64,
            peers: self.peers.len() as u64,
            ..self.summary.clone()
        }
    }

    fn count(&mut self, len: usize, from: SocketAddr) {
        self.summary.datagrams += 1;
        self.summary.bytes += len as u64;
        if self.peers.len() < PEERS_LIMIT {
            self.peers.insert(from);
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
            for i in 0..n {
                if let Some(meta) = self.batch.meta(i) {
                    self.count(meta.len, meta.from);
                }
            }
            self.summary.send_failed += match self.wire {
                Wire::Sonde => self.batch.echo(&self.socket, n),
                Wire::Sockperf => {
                    let mut silent = 0;
                    let refused = self.batch.reply_with(&self.socket, n, |datagram| {
                        let reply = sockperf::server_reply(datagram);
                        silent += usize::from(reply.is_none());
                        reply
                    });
                    self.summary.not_answered += silent as u64;
                    refused
                }
            } as u64;
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

    fn advance(&mut self, _now: Instant) -> Result<Wake, Error> {
        Ok(Wake::IDLE)
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
