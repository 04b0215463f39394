//! What a reflector answers: the checks every datagram passes before it is echoed, in order of
//! cost — loop protection, the `--allow` list, per-source and total rate limits, then the
//! authentication tag. Each refusal has its own counter; nothing is queued.

use crate::config::{Limit, Policy};
use crate::model::Refusals;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// Source ports of UDP services that answer whatever they receive, or that a reflector must
/// never answer: a datagram "from" one of them is how two reflectors are made to ping-pong (or a
/// reflector aimed at a victim's service). 0 is never a real source port. Sorted by port.
pub(crate) const LOOP_PORTS: &[(u16, &str)] = &[
    (0, "no port"),
    (7, "echo"),
    (9, "discard"),
    (11, "systat"),
    (13, "daytime"),
    (17, "qotd"),
    (19, "chargen"),
    (37, "time"),
    (53, "dns"),
    (67, "dhcp server"),
    (68, "dhcp client"),
    (69, "tftp"),
    (111, "portmap"),
    (123, "ntp"),
    (137, "netbios-ns"),
    (138, "netbios-dgm"),
    (161, "snmp"),
    (162, "snmp-trap"),
    (389, "cldap"),
    (500, "ike"),
    (520, "rip"),
    (1900, "ssdp"),
    (3702, "ws-discovery"),
    (5353, "mdns"),
    (11211, "memcached"),
];

/// Most sources with a rate-limit bucket at once; idle ones are swept out when it is full, and a
/// new source that still finds no room is refused (counted as rate limited): memory stays
/// bounded whatever the number of (spoofed) sources.
pub(crate) const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(limit: &Limit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            last: now,
        }
    }

    fn refill(&mut self, limit: &Limit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.rate).min(limit.burst);
        self.last = now;
    }

    fn take(&mut self, limit: &Limit, now: Instant) -> bool {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A reflector's gate: [`Guard::admit`] says whether to answer a datagram.
pub(crate) struct Guard {
    local: SocketAddr,
    policy: Policy,
    sources: HashMap<IpAddr, Bucket>,
    total: Option<Bucket>,
    last_sweep: Option<Instant>,
    /// No policy beyond loop protection: the rest of [`Guard::admit`] is skipped.
    open: bool,
    /// The last sender that passed loop protection.
    last_safe: Option<SocketAddr>,
    pub refused: Refusals,
}

impl Guard {
    pub(crate) fn new(local: SocketAddr, policy: Policy) -> Self {
        Self {
            open: policy == Policy::default(),
            last_safe: None,
            local,
            policy,
            sources: HashMap::new(),
            total: None,
            last_sweep: None,
            refused: Refusals::default(),
        }
    }

    /// Whether to answer `data` from `from`, received at `now`; a refusal is counted.
    /// The common case, a known sender and no policy, is inlined into the serving loop.
    #[inline]
    pub(crate) fn admit(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> bool {
        if self.open && self.last_safe == Some(from) {
            return true;
        }
        self.admit_checked(from, data, now)
    }

    /// As [`Guard::admit`] at the present time, read only where a check needs it (the usual
    /// datagram, from the sender before it with no limit set, needs none).
    pub(crate) fn admit_now(&mut self, from: SocketAddr, data: &[u8]) -> bool {
        if self.open && self.last_safe == Some(from) {
            return true;
        }
        self.admit_checked(from, data, Instant::now())
    }

    fn admit_checked(&mut self, from: SocketAddr, data: &[u8], now: Instant) -> bool {
        let refused = &mut self.refused;
        // Datagrams come in runs from one sender: check a new sender once.
        if self.last_safe != Some(from) {
            if loop_risk(from, self.local) {
                refused.loop_protection += 1;
                return false;
            }
            self.last_safe = Some(from);
        }
        if self.open {
            return true;
        }
        let ip = canonical(from.ip());
        if !self.policy.allow.is_empty() && !self.policy.allow.iter().any(|net| net.contains(&ip)) {
            refused.not_allowed += 1;
            return false;
        }
        if let Some(limit) = self.policy.per_source {
            if !self.sources.contains_key(&ip) && self.sources.len() >= MAX_SOURCES {
                sweep(&mut self.sources, &limit, &mut self.last_sweep, now);
            }
            let room = self.sources.len() < MAX_SOURCES;
            let admitted = match self.sources.get_mut(&ip) {
                Some(bucket) => bucket.take(&limit, now),
                None if room => {
                    let mut bucket = Bucket::full(&limit, now);
                    let admitted = bucket.take(&limit, now);
                    self.sources.insert(ip, bucket);
                    admitted
                }
                None => false,
            };
            if !admitted {
                self.refused.source_rate_limited += 1;
                return false;
            }
        }
        if let Some(limit) = self.policy.total {
            let bucket = self.total.get_or_insert_with(|| Bucket::full(&limit, now));
            if !bucket.take(&limit, now) {
                self.refused.total_rate_limited += 1;
                return false;
            }
        }
        if let Some(key) = &self.policy.key {
            if !key.verify(data) {
                self.refused.auth_failed += 1;
                return false;
            }
        }
        true
    }
}

/// Drops the buckets of sources that have been quiet long enough to be full again (at most once
/// a second: a full table under a spoofed flood must not cost a sweep per datagram).
fn sweep(
    sources: &mut HashMap<IpAddr, Bucket>,
    limit: &Limit,
    last: &mut Option<Instant>,
    now: Instant,
) {
    if last.is_some_and(|t| now.saturating_duration_since(t).as_secs() < 1) {
        return;
    }
    *last = Some(now);
    sources.retain(|_, b| {
        b.refill(limit, now);
        b.tokens < limit.burst
    });
}

/// IPv4-mapped IPv6 sources (a dual-stack socket) are checked as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether answering `from` could start a loop or reflect onto a broadcast domain.
pub(crate) fn loop_risk(from: SocketAddr, local: SocketAddr) -> bool {
    let ourselves = from.port() == local.port() && canonical(from.ip()) == canonical(local.ip());
    let service = LOOP_PORTS
        .binary_search_by_key(&from.port(), |&(port, _)| port)
        .is_ok();
    if ourselves || service {
        return true;
    }
    match canonical(from.ip()) {
        IpAddr::V4(ip) => ip.is_broadcast() || ip.is_multicast() || ip.is_unspecified(),
        IpAddr::V6(ip) => ip.is_multicast() || ip.is_unspecified(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::auth::Key;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LOCAL: &str = "127.0.0.1:9999";

    #[test]
    fn loop_protection_refuses_services_broadcast_and_ourselves() {
        let local = addr(LOCAL);
        for from in [
            "127.0.0.1:7",
            "10.0.0.1:19",
            "[::1]:53",
            "127.0.0.1:123",
            "255.255.255.255:40000",
            "224.0.0.251:40000",
            "[ff02::1]:40000",
            "0.0.0.0:40000",
            LOCAL,
            "[::ffff:127.0.0.1]:9999",
        ] {
            assert!(loop_risk(addr(from), local), "{from} was not refused");
        }
        assert!(!loop_risk(addr("127.0.0.1:40000"), local));
        assert!(!loop_risk(addr("[::1]:40000"), local));
    }

    #[test]
    fn loop_ports_are_sorted_for_binary_search() {
        assert!(LOOP_PORTS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn allow_list_admits_only_its_networks() {
        let policy = Policy {
            allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            ..Policy::default()
        };
        let mut g = Guard::new(addr(LOCAL), policy);
        let now = Instant::now();
        assert!(g.admit(addr("127.9.9.9:5000"), b"x", now));
        assert!(g.admit(addr("[::1]:5000"), b"x", now));
        assert!(g.admit(addr("[::ffff:127.0.0.2]:5000"), b"x", now));
        assert!(!g.admit(addr("198.18.0.1:5000"), b"x", now));
        assert_eq!(g.refused.not_allowed, 1);
    }

    #[test]
    fn per_source_buckets_are_independent_and_refill() {
        let policy = Policy {
            per_source: Some(Limit {
                rate: 1000.0,
                burst: 10.0,
            }),
            ..Policy::default()
        };
        let mut g = Guard::new(addr(LOCAL), policy);
        let t0 = Instant::now();
        let a = addr("127.0.0.2:5000");
        let b = addr("127.0.0.3:5000");
        let admitted = (0..100).filter(|_| g.admit(a, b"x", t0)).count();
        assert_eq!(admitted, 10, "a burst of 10");
        assert!(g.admit(b, b"x", t0), "another source has its own bucket");
        // 5 ms later: 5 more tokens.
        let t1 = t0 + Duration::from_millis(5);
        let admitted = (0..100).filter(|_| g.admit(a, b"x", t1)).count();
        assert_eq!(admitted, 5);
        assert_eq!(g.refused.source_rate_limited, 90 + 95);
    }

    #[test]
    fn total_limit_caps_all_sources_together() {
        let policy = Policy {
            total: Some(Limit {
                rate: 100.0,
                burst: 20.0,
            }),
            ..Policy::default()
        };
        let mut g = Guard::new(addr(LOCAL), policy);
        let now = Instant::now();
        let admitted = (0..50u16)
            .filter(|i| g.admit(SocketAddr::from(([127, 0, 0, 2], 5000 + i)), b"x", now))
            .count();
        assert_eq!(admitted, 20);
        assert_eq!(g.refused.total_rate_limited, 30);
    }

    #[test]
    fn the_source_table_stays_bounded_under_spoofed_sources() {
        let limit = Limit {
            rate: 1.0,
            burst: 2.0,
        };
        let policy = Policy {
            per_source: Some(limit),
            ..Policy::default()
        };
        let mut g = Guard::new(addr(LOCAL), policy);
        let now = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 1000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            g.admit(SocketAddr::new(ip.into(), 5000), b"x", now);
        }
        assert!(g.sources.len() <= MAX_SOURCES);
        assert_eq!(g.refused.source_rate_limited, 1000);
        // Two seconds on, the old buckets are full again: a sweep makes room.
        let later = now + Duration::from_secs(2);
        assert!(g.admit(addr("198.18.0.9:5000"), b"x", later));
    }

    #[test]
    fn auth_refuses_unsigned_probes() {
        let key = Key::new(b"0123456789abcdef".to_vec()).unwrap();
        let mut g = Guard::new(
            addr(LOCAL),
            Policy {
                key: Some(key.clone()),
                ..Policy::default()
            },
        );
        let mut probe = vec![1u8; 64];
        let now = Instant::now();
        assert!(!g.admit(addr("127.0.0.1:5000"), &probe, now));
        key.sign(&mut probe);
        assert!(g.admit(addr("127.0.0.1:5000"), &probe, now));
        assert_eq!(g.refused.auth_failed, 1);
    }
}
