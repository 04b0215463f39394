//! The impairment relay role (`sonde impair`): forwards datagrams between a client and a server,
//! impairing each direction as an [`Impairment`] decides. Held datagrams wait in the same
//! [`Wheel`] type that holds the pinger's timeouts.
//!
//! One client at a time: replies from the server go to the client heard from last. A relay needs
//! no root and works on any kernel, which is what makes experiments possible without netem.

use super::impairment::{Drop as DropReason, Fate, Impairment};
use super::service::{Next, Service};
use super::socket;
use crate::config::RelayConfig;
use crate::engine::{Role, Wake, Wheel};
use crate::error::Error;
use crate::model::{DirectionStats, RelaySummary};
use mio::event::Event;
use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Wheel resolution for held datagrams.
const TICK_NS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Up = 0,
    Down = 1,
}

struct Held {
    dir: Dir,
    to: SocketAddr,
    data: Vec<u8>,
}

struct Direction {
    impairment: Impairment,
    stats: DirectionStats,
    held: usize,
}

pub struct Relay {
    cfg: RelayConfig,
    /// Faces the client.
    listen: UdpSocket,
    listen_addr: SocketAddr,
    /// Faces the server.
    upstream: UdpSocket,
    client: Option<SocketAddr>,
    dirs: [Direction; 2],
    wheel: Wheel<usize>,
    /// Held datagrams by index, with a free list: no allocation per datagram once warm.
    slots: Vec<Option<Held>>,
    free: Vec<usize>,
    buf: Vec<u8>,
    foreign: u64,
    epoch: Instant,
    service: Service,
}

impl Relay {
    pub fn bind(cfg: RelayConfig) -> Result<Self, Error> {
        let (listen, listen_addr) = socket::bind(cfg.listen)?;
        let (upstream, _) = socket::bind(socket::any_for(&cfg.forward))?;
        // Independent streams per direction, both derived from the one seed.
        let dirs = [
            Direction {
                impairment: Impairment::new(cfg.upstream.clone(), cfg.seed),
                stats: DirectionStats::default(),
                held: 0,
            },
            Direction {
                impairment: Impairment::new(
                    cfg.downstream.clone(),
                    cfg.seed ^ 0xd1b5_4a32_d192_ed03,
                ),
                stats: DirectionStats::default(),
                held: 0,
            },
        ];
        Ok(Self {
            cfg,
            listen,
            listen_addr,
            upstream,
            client: None,
            dirs,
            wheel: Wheel::new(),
            slots: Vec::new(),
            free: Vec::new(),
            buf: vec![0u8; socket::RECV_BUF],
            foreign: 0,
            epoch: Instant::now(),
            service: Service::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn summary(&self) -> RelaySummary {
        let mut up = self.dirs[0].stats.clone();
        let mut down = self.dirs[1].stats.clone();
        up.held_at_stop = self.dirs[0].held as u64;
        down.held_at_stop = self.dirs[1].held as u64;
        RelaySummary {
            listen: self.listen_addr.to_string(),
            forward: self.cfg.forward.to_string(),
            seed: self.cfg.seed,
            upstream_spec: self.cfg.upstream.describe(),
            downstream_spec: self.cfg.downstream.describe(),
            upstream: up,
            downstream: down,
            foreign: self.foreign,
            recv_errors: self.service.receive_errors(),
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Where datagrams travelling in `dir` leave.
    fn departure_socket(&self, dir: Dir) -> &UdpSocket {
        match dir {
            Dir::Up => &self.upstream,
            Dir::Down => &self.listen,
        }
    }

    fn send(&mut self, dir: Dir, data_slot: Option<usize>, len: usize, to: SocketAddr) {
        let data = match data_slot {
            Some(i) => &self.slots[i].as_ref().expect("held slot").data[..],
            None => &self.buf[..len],
        };
        let ok = self.departure_socket(dir).send_to(data, to).is_ok();
        let stats = &mut self.dirs[dir as usize].stats;
        if ok {
            stats.delivered += 1;
        } else {
            stats.send_failed += 1;
        }
    }

    fn hold(&mut self, dir: Dir, to: SocketAddr, len: usize, depart_ns: u64) {
        let held = Held {
            dir,
            to,
            data: self.buf[..len].to_vec(),
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(held);
                i
            }
            None => {
                self.slots.push(Some(held));
                self.slots.len() - 1
            }
        };
        self.dirs[dir as usize].held += 1;
        self.wheel.insert(depart_ns.div_ceil(TICK_NS), index);
    }

    /// Impairs and forwards (or holds) the datagram now in `buf`.
    fn relay(&mut self, dir: Dir, len: usize, to: SocketAddr) {
        let now_ns = self.now_ns();
        let d = &mut self.dirs[dir as usize];
        d.stats.received += 1;
        match d.impairment.decide(now_ns, len, d.held) {
            Fate::Dropped(DropReason::Loss) => d.stats.lost += 1,
            Fate::Dropped(DropReason::Queue) => d.stats.queue_dropped += 1,
            Fate::Deliver { at, reordered } => {
                d.stats.reordered += u64::from(reordered);
                d.stats.duplicated += u64::from(at[1].is_some());
                for depart in at.into_iter().flatten() {
                    if depart <= now_ns {
                        self.send(dir, None, len, to);
                    } else {
                        self.hold(dir, to, len, depart);
                    }
                }
            }
        }
    }

    /// Reads what arrived for `dir`: from the client going up, from the server going down.
    fn drain(&mut self, dir: Dir) {
        loop {
            let socket = match dir {
                Dir::Up => &self.listen,
                Dir::Down => &self.upstream,
            };
            // ICMP errors from either side are reported once, counted, and read past.
            let (len, from) = match self.service.judge(socket.recv_from(&mut self.buf)) {
                Next::Handle(r) => r,
                Next::Retry => continue,
                Next::Wait => return,
            };
            match dir {
                Dir::Up => {
                    self.client = Some(from);
                    self.relay(Dir::Up, len, self.cfg.forward);
                }
                Dir::Down if from != self.cfg.forward => self.foreign += 1,
                Dir::Down => match self.client {
                    Some(client) => self.relay(Dir::Down, len, client),
                    None => self.foreign += 1,
                },
            }
        }
    }

    fn release_due(&mut self) {
        let tick = self.now_ns() / TICK_NS;
        while let Some(index) = self.wheel.poll(tick) {
            let held = self.slots[index].as_ref().expect("held slot");
            let (dir, to) = (held.dir, held.to);
            self.dirs[dir as usize].held -= 1;
            self.send(dir, Some(index), 0, to);
            self.slots[index] = None;
            self.free.push(index);
        }
    }
}

impl Role for Relay {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.listen, first, Interest::READABLE)?;
        registry.register(&mut self.upstream, Token(first.0 + 1), Interest::READABLE)
    }

    fn ready(&mut self, index: usize, event: &Event) -> Result<(), Error> {
        if event.is_readable() || event.is_error() {
            // Datagrams from the client travel up; those from the server, down.
            self.drain(if index == 0 { Dir::Up } else { Dir::Down });
        }
        Ok(())
    }

    fn advance(&mut self, _now: Instant) -> Result<Wake, Error> {
        self.release_due();
        Ok(match self.wheel.next_expiration() {
            Some(tick) => Wake::exactly(self.epoch + Duration::from_nanos(tick * TICK_NS)),
            None => Wake::IDLE,
        })
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
