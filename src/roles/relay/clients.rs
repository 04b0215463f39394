//! The relay's clients: a bounded table keyed by client address. Each client has its own
//! upstream socket (so the server's answers tell whose they are) and its own impairment of
//! each direction, seeded from the relay's seed and the client's rank (the first client's
//! streams are the relay's seed itself, the second's the next, ...): a run with the same
//! clients in the same order is the same experiment.

use super::Dir;
use crate::config::RelayConfig;
use crate::model::DirectionStats;
use crate::roles::impairment::Impairment;
use mio::net::UdpSocket;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One direction of one client: its impairment, counters and datagrams held.
pub(super) struct Direction {
    pub(super) impairment: Impairment,
    pub(super) stats: DirectionStats,
    pub(super) held: usize,
}

pub(super) struct Client {
    pub(super) addr: SocketAddr,
    /// Faces the server, for this client only.
    pub(super) upstream: UdpSocket,
    pub(super) dirs: [Direction; 2],
    pub(super) last_heard: Instant,
}

impl Client {
    /// Datagrams of this client still waiting in the wheel, either way.
    fn holding(&self) -> bool {
        self.dirs.iter().any(|d| d.held > 0)
    }
}

/// The seed of the second direction's stream, from the first's.
const DOWN_SEED: u64 = 0xd1b5_4a32_d192_ed03;

/// The clients, by slot (a slot's index is its socket's token) and by address.
pub(super) struct Clients {
    slots: Vec<Option<Client>>,
    by_addr: HashMap<SocketAddr, usize>,
    limit: usize,
    idle: Duration,
    /// Clients taken on so far: the next one's rank.
    ranks: u64,
    /// Counters of clients swept away, kept for the totals.
    pub(super) gone: [DirectionStats; 2],
    pub(super) swept: u64,
}

impl Clients {
    pub(super) fn new(limit: usize, idle: Duration) -> Self {
        Self {
            slots: Vec::new(),
            by_addr: HashMap::new(),
            limit,
            idle,
            ranks: 0,
            gone: Default::default(),
            swept: 0,
        }
    }

    pub(super) fn find(&self, addr: &SocketAddr) -> Option<usize> {
        self.by_addr.get(addr).copied()
    }

    pub(super) fn get_mut(&mut self, slot: usize) -> Option<&mut Client> {
        self.slots.get_mut(slot).and_then(Option::as_mut)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Client> {
        self.slots.iter().flatten()
    }

    /// Clients taken on since the start.
    pub(super) fn seen(&self) -> u64 {
        self.ranks
    }

    /// The slot the next client added gets.
    pub(super) fn next_slot(&self) -> usize {
        self.slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len())
    }

    pub(super) fn is_full(&self) -> bool {
        self.by_addr.len() >= self.limit
    }

    /// Takes on `addr` with its `upstream` socket; its slot. The caller checked `is_full`.
    pub(super) fn add(
        &mut self,
        addr: SocketAddr,
        upstream: UdpSocket,
        cfg: &RelayConfig,
    ) -> usize {
        let seed = cfg.seed.wrapping_add(self.ranks);
        self.ranks += 1;
        let direction = |spec, seed| Direction {
            impairment: Impairment::new(spec, seed),
            stats: DirectionStats::default(),
            held: 0,
        };
        let client = Client {
            addr,
            upstream,
            dirs: [
                direction(cfg.upstream.clone(), seed),
                direction(cfg.downstream.clone(), seed ^ DOWN_SEED),
            ],
            last_heard: Instant::now(),
        };
        let slot = self.next_slot();
        if slot == self.slots.len() {
            self.slots.push(None);
        }
        self.slots[slot] = Some(client);
        self.by_addr.insert(addr, slot);
        slot
    }

    /// Removes the clients not heard from for the idle time (and with nothing held): their
    /// sockets, to be deregistered.
    pub(super) fn sweep(&mut self, now: Instant) -> Vec<UdpSocket> {
        let mut closed = Vec::new();
        for slot in self.slots.iter_mut() {
            let idle = slot
                .as_ref()
                .is_some_and(|c| now.duration_since(c.last_heard) >= self.idle && !c.holding());
            if let Some(client) = slot.take_if(|_| idle) {
                self.by_addr.remove(&client.addr);
                for (gone, d) in self.gone.iter_mut().zip(&client.dirs) {
                    gone.add(&d.stats);
                }
                self.swept += 1;
                closed.push(client.upstream);
            }
        }
        closed
    }

    /// Every client's counters in `dir`, those swept away included.
    pub(super) fn total(&self, dir: Dir) -> DirectionStats {
        let mut total = self.gone[dir as usize].clone();
        for c in self.iter() {
            let d = &c.dirs[dir as usize];
            total.add(&d.stats);
            total.held_at_stop += d.held as u64;
        }
        total
    }
}
