//! The impairment relay role (`sonde impair`): forwards datagrams between clients and a server,
//! impairing each direction as an [`Impairment`](super::impairment::Impairment) decides. Held
//! datagrams wait in the same [`Wheel`] type that holds the pinger's timeouts.
//!
//! Several clients at once ([`clients`]): each has its own upstream socket, so the server's
//! answers go back to whoever asked, and its own impairment state. The guard the echo uses stands
//! in front (loop protection, allow list, rate limits). A relay needs no root and works on any
//! kernel, which is what makes experiments possible without netem.

mod clients;

use super::guard::Guard;
use super::impairment::{Drop as DropReason, Fate};
use super::service::{Next, Service};
use super::socket;
use crate::config::RelayConfig;
use crate::engine::{Role, Wake, Wheel};
use crate::error::Error;
use crate::model::{RelayClient, RelayClients, RelaySummary};
use clients::Clients;
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

/// A datagram waiting for its departure time.
struct Held {
    dir: Dir,
    client: usize,
    data: Vec<u8>,
}

pub struct Relay {
    cfg: RelayConfig,
    /// Faces the clients.
    listen: UdpSocket,
    listen_addr: SocketAddr,
    clients: Clients,
    guard: Guard,
    wheel: Wheel<usize>,
    /// Held datagrams by index, with a free list: no allocation per datagram once warm.
    slots: Vec<Option<Held>>,
    free: Vec<usize>,
    buf: Vec<u8>,
    foreign: u64,
    refused_table_full: u64,
    /// New clients whose upstream socket could not be opened.
    upstream_failed: u64,
    epoch: Instant,
    next_sweep: Instant,
    service: Service,
    /// Where new clients' sockets are registered, from token `first + 1 + slot`.
    registry: Option<(Registry, Token)>,
}

impl Relay {
    pub fn bind(cfg: RelayConfig) -> Result<Self, Error> {
        let (listen, listen_addr) = socket::bind(cfg.listen)?;
        if cfg.forward == listen_addr {
            return Err(Error::config(
                "--forward",
                format!(
                    "{} is the relay's own address: it would relay to itself",
                    cfg.forward
                ),
            ));
        }
        let clients = Clients::new(cfg.max_clients, cfg.client_idle);
        let guard = Guard::new(listen_addr, cfg.policy.clone());
        let now = Instant::now();
        Ok(Self {
            next_sweep: now + cfg.client_idle,
            cfg,
            listen,
            listen_addr,
            clients,
            guard,
            wheel: Wheel::new(),
            slots: Vec::new(),
            free: Vec::new(),
            buf: vec![0u8; socket::RECV_BUF],
            foreign: 0,
            refused_table_full: 0,
            upstream_failed: 0,
            epoch: now,
            service: Service::default(),
            registry: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    pub fn summary(&self) -> RelaySummary {
        let policy = &self.cfg.policy;
        let per_client = self
            .clients
            .iter()
            .map(|c| RelayClient {
                client: c.addr.to_string(),
                upstream: c.dirs[0].stats.clone(),
                downstream: c.dirs[1].stats.clone(),
            })
            .collect::<Vec<_>>();
        RelaySummary {
            listen: self.listen_addr.to_string(),
            forward: self.cfg.forward.to_string(),
            seed: self.cfg.seed,
            upstream_spec: self.cfg.upstream.describe(),
            downstream_spec: self.cfg.downstream.describe(),
            upstream: self.clients.total(Dir::Up),
            downstream: self.clients.total(Dir::Down),
            foreign: self.foreign,
            recv_errors: self.service.receive_errors(),
            clients: RelayClients {
                now: per_client.len() as u64,
                limit: self.cfg.max_clients as u64,
                seen: self.clients.seen(),
                swept: self.clients.swept,
                refused_table_full: self.refused_table_full,
                upstream_failed: self.upstream_failed,
            },
            refused: self.guard.refused.clone(),
            allow: policy.allow.iter().map(ToString::to_string).collect(),
            per_source_limit_pps: policy.per_source.map(|l| l.rate),
            total_limit_pps: policy.total.map(|l| l.rate),
            per_client,
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Sends a datagram of `client` on its way in `dir`: the one held at `held`, or the `len`
    /// bytes in `buf`.
    fn send(&mut self, dir: Dir, client: usize, held: Option<usize>, len: usize) {
        let data = match held {
            Some(i) => &self.slots[i].as_ref().expect("held slot").data[..],
            None => &self.buf[..len],
        };
        let forward = self.cfg.forward;
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let ok = match dir {
            Dir::Up => c.upstream.send_to(data, forward).is_ok(),
            Dir::Down => self.listen.send_to(data, c.addr).is_ok(),
        };
        let stats = &mut c.dirs[dir as usize].stats;
        if ok {
            stats.delivered += 1;
        } else {
            stats.send_failed += 1;
        }
    }

    fn hold(&mut self, dir: Dir, client: usize, len: usize, depart_ns: u64) {
        let held = Held {
            dir,
            client,
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
        if let Some(c) = self.clients.get_mut(client) {
            c.dirs[dir as usize].held += 1;
        }
        self.wheel.insert(depart_ns.div_ceil(TICK_NS), index);
    }

    /// Impairs and forwards (or holds) the datagram of `client` now in `buf`.
    fn relay(&mut self, dir: Dir, client: usize, len: usize) {
        let now_ns = self.now_ns();
        let Some(c) = self.clients.get_mut(client) else {
            return;
        };
        let d = &mut c.dirs[dir as usize];
        d.stats.received += 1;
        match d.impairment.decide(now_ns, len, d.held) {
            Fate::Dropped(DropReason::Loss) => d.stats.lost += 1,
            Fate::Dropped(DropReason::Queue) => d.stats.queue_dropped += 1,
            Fate::Deliver { at, reordered } => {
                d.stats.reordered += u64::from(reordered);
                d.stats.duplicated += u64::from(at[1].is_some());
                for depart in at.into_iter().flatten() {
                    if depart <= now_ns {
                        self.send(dir, client, None, len);
                    } else {
                        self.hold(dir, client, len, depart);
                    }
                }
            }
        }
    }

    /// The slot of the client at `from`, taken on if new and there is room.
    fn client_for(&mut self, from: SocketAddr) -> Option<usize> {
        if let Some(slot) = self.clients.find(&from) {
            return Some(slot);
        }
        if self.clients.is_full() {
            self.refused_table_full += 1;
            return None;
        }
        let (registry, first) = self.registry.as_ref()?;
        let token = Token(first.0 + 1 + self.clients.next_slot());
        let opened = socket::bind(socket::any_for(&self.cfg.forward)).and_then(|(mut s, _)| {
            registry
                .register(&mut s, token, Interest::READABLE)
                .map_err(|e| Error::Setup("register a client's upstream socket", e))?;
            Ok(s)
        });
        match opened {
            Ok(upstream) => Some(self.clients.add(from, upstream, &self.cfg)),
            // Out of sockets (ulimit -n): this client waits for another's to be swept.
            Err(_) => {
                self.upstream_failed += 1;
                None
            }
        }
    }

    /// Reads what the clients sent: past the guard, then up.
    fn drain_clients(&mut self) {
        loop {
            let (len, from) = match self.service.judge(self.listen.recv_from(&mut self.buf)) {
                Next::Handle(r) => r,
                Next::Retry => continue,
                Next::Wait => return,
            };
            let now = Instant::now();
            if !self.guard.admit(from, &self.buf[..len], now) {
                continue;
            }
            if let Some(slot) = self.client_for(from) {
                if let Some(c) = self.clients.get_mut(slot) {
                    c.last_heard = now;
                }
                self.relay(Dir::Up, slot, len);
            }
        }
    }

    /// Reads what the server sent to `client`'s socket, and sends it down.
    fn drain_server(&mut self, client: usize) {
        loop {
            let Some(c) = self.clients.get_mut(client) else {
                return;
            };
            let received = c.upstream.recv_from(&mut self.buf);
            // ICMP errors from the server's side are reported once, counted, and read past.
            let (len, from) = match self.service.judge(received) {
                Next::Handle(r) => r,
                Next::Retry => continue,
                Next::Wait => return,
            };
            if from != self.cfg.forward {
                self.foreign += 1;
                continue;
            }
            self.relay(Dir::Down, client, len);
        }
    }

    fn release_due(&mut self) {
        let tick = self.now_ns() / TICK_NS;
        while let Some(index) = self.wheel.poll(tick) {
            let held = self.slots[index].as_ref().expect("held slot");
            let (dir, client) = (held.dir, held.client);
            if let Some(c) = self.clients.get_mut(client) {
                c.dirs[dir as usize].held -= 1;
            }
            self.send(dir, client, Some(index), 0);
            self.slots[index] = None;
            self.free.push(index);
        }
    }

    /// Forgets the clients idle for `--client-idle`, closing their sockets.
    fn sweep(&mut self, now: Instant) {
        for mut socket in self.clients.sweep(now) {
            if let Some((registry, _)) = &self.registry {
                let _ = registry.deregister(&mut socket);
            }
        }
        self.next_sweep = now + (self.cfg.client_idle / 4).max(Duration::from_millis(10));
    }
}

impl Role for Relay {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.listen, first, Interest::READABLE)?;
        // Clients come and go: their sockets are registered as they arrive.
        self.registry = Some((registry.try_clone()?, first));
        Ok(())
    }

    fn ready(&mut self, index: usize, event: &Event) -> Result<(), Error> {
        if event.is_readable() || event.is_error() {
            // Datagrams from the clients travel up; those from the server, down.
            match index {
                0 => self.drain_clients(),
                i => self.drain_server(i - 1),
            }
        }
        Ok(())
    }

    fn advance(&mut self, now: Instant) -> Result<Wake, Error> {
        self.release_due();
        let clients = self.clients.iter().next().is_some();
        if clients && now >= self.next_sweep {
            self.sweep(now);
        }
        let held = self
            .wheel
            .next_expiration()
            .map(|tick| self.epoch + Duration::from_nanos(tick * TICK_NS));
        let sweep = clients.then_some(self.next_sweep);
        Ok(match held.into_iter().chain(sweep).min() {
            Some(at) if Some(at) == held => Wake::exactly(at),
            Some(at) => Wake::around(at),
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
