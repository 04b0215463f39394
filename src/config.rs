//! Typed configurations for the roles, and the checks that turn a bad value into an error naming
//! its flag. No clap here: the library is usable without the CLI.

use crate::error::Error;
use crate::wire::auth::Key;
use crate::wire::stamp::tlv::Tos;
use crate::wire::Wire;
use ipnet::IpNet;
use serde::Serialize;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest UDP payload over IPv4: 65535 - 20 (IP header) - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// Largest UDP payload over IPv6 without jumbograms: 65535 - 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;
/// Most probes in flight at once: bounds the sequence table (about 32 bytes a probe, twice over).
pub const MAX_INFLIGHT: usize = 1 << 20;
/// Longest per-probe timeout; the latency histograms cover up to one hour.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);
/// Highest fixed rate accepted, probes per second.
pub const MAX_RATE: f64 = 100_000_000.0;

/// Largest UDP payload towards `addr`.
pub fn max_payload(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => MAX_UDP_PAYLOAD_V4,
        SocketAddr::V6(_) => MAX_UDP_PAYLOAD_V6,
    }
}

/// Socket buffer size asked for by default, each way: room for bursts of large probes, so that
/// loss is the network's and not our own socket's. The kernel caps it (`net.core.rmem_max`).
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Socket buffer sizes to ask the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffers {
    pub rcv: usize,
    pub snd: usize,
}

impl Default for Buffers {
    fn default() -> Self {
        Self {
            rcv: SOCKET_BUFFER,
            snd: SOCKET_BUFFER,
        }
    }
}

/// How probes are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Open loop: probe `k` is due at `k / rate` seconds, whatever the replies do.
    Rate(f64),
    /// Closed loop: send whenever fewer than `inflight` probes are outstanding.
    Window,
}

/// What `sonde ping` (and the pinger half of `sonde loopback`) does.
#[derive(Debug, Clone, PartialEq)]
pub struct PingConfig {
    pub target: SocketAddr,
    /// More targets probed alongside `target` from the same socket and loop (`sonde ping A B C`):
    /// each with its own sequence numbers, timeouts and figures, at `pace` each, their schedules
    /// spread evenly over the period.
    pub also: Vec<SocketAddr>,
    /// Local address to send from; by default the unspecified address of the target's family.
    pub bind: Option<SocketAddr>,
    /// Datagram size in bytes, header included.
    pub size: usize,
    /// Stop after this many probes.
    pub count: Option<u64>,
    /// Stop sending after this long.
    pub duration: Option<Duration>,
    pub pace: Pace,
    /// Cap on outstanding probes; `None` derives one from the pace (see [`PingConfig::inflight`]).
    pub inflight: Option<usize>,
    pub timeout: Duration,
    /// Socket buffers to ask for.
    pub buffers: Buffers,
    /// The probe format.
    pub wire: Wire,
    /// Take receive times from the kernel (`SO_TIMESTAMPNS`) rather than after the receive call.
    pub kernel_timestamps: bool,
    /// Sign probes and accept only signed replies (`--key-file`).
    pub key: Option<Key>,
    /// Send runs of probes as one buffer (UDP GSO).
    pub gso: Gso,
    /// Take replies an echo sent as one buffer in one buffer (UDP GRO): fewer calls, but the
    /// kernel counts a coalesced buffer it drops as one drop in `local_drops`.
    pub gro: bool,
    /// Send probes with this DSCP and ECN (`--dscp`, `--ecn`); `None`: the system's default.
    pub tos: Option<Tos>,
    /// Send probes with this TTL / hop limit (`--ttl`); `None`: the system's default.
    pub ttl: Option<u8>,
    /// Send and receive through this interface only (`--interface`, `SO_BINDTODEVICE`).
    pub interface: Option<String>,
    /// Set don't-fragment (`--df`): a probe too big for the path is not sent (`EMSGSIZE`).
    pub dont_fragment: bool,
    /// Connect the socket to the target (`--connect`): a cached route, and only its datagrams.
    pub connect: bool,
    /// One IPv6 socket for both address families even if the targets so far are of one (a
    /// pinger among several of a run that mixes them, whose reloads may hand it either).
    pub dual_stack: bool,
}

/// When a pinger uses segmentation offload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gso {
    /// Toward loopback only: on a real path a qdisc or firewall sees a run of probes as one
    /// packet, and would drop or delay them together.
    #[default]
    Auto,
    On,
    Off,
}

impl Gso {
    pub fn applies_to(self, target: SocketAddr) -> bool {
        match self {
            Gso::Auto => target.ip().is_loopback(),
            Gso::On => true,
            Gso::Off => false,
        }
    }
}

impl PingConfig {
    /// The defaults of `sonde ping`: 64-byte probes, one per second, 1 s timeout, no end.
    pub fn new(target: SocketAddr) -> Self {
        Self {
            target,
            also: Vec::new(),
            bind: None,
            size: 64,
            count: None,
            duration: None,
            pace: Pace::Rate(1.0),
            inflight: None,
            timeout: Duration::from_secs(1),
            buffers: Buffers::default(),
            wire: Wire::Sonde,
            kernel_timestamps: true,
            key: None,
            gso: Gso::Auto,
            gro: false,
            tos: None,
            ttl: None,
            interface: None,
            dont_fragment: false,
            connect: false,
            dual_stack: false,
        }
    }

    /// The effective cap on outstanding probes. At a fixed rate the default lets every probe of
    /// one timeout be outstanding (so a dead server does not stall the schedule), plus slack.
    pub fn inflight(&self) -> usize {
        match (self.inflight, self.pace) {
            (Some(n), _) => n,
            (None, Pace::Rate(rate)) => {
                let per_timeout = (rate * self.timeout.as_secs_f64()).ceil() as usize;
                per_timeout.saturating_add(64).min(MAX_INFLIGHT)
            }
            (None, Pace::Window) => 1,
        }
    }

    /// Whether send times come from the kernel as well: asked for (`kernel_timestamps`), except
    /// in a closed loop of more than one in flight. There round trips queue in the window, and
    /// the kernel's work per stamp (queueing it, waking the socket, reading it back) cut the
    /// round-trip rate by 28% without GSO runs (7% with them) for a gain of a microsecond.
    pub fn kernel_send_times(&self) -> bool {
        self.kernel_timestamps && !(matches!(self.pace, Pace::Window) && self.inflight() > 1)
    }

    /// Every target: `target`, then `also`.
    pub fn targets(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.target).chain(self.also.iter().copied())
    }

    /// The targets are of both address families: one IPv6 socket serves both (IPv4 targets
    /// reached at their IPv4-mapped addresses).
    pub fn both_families(&self) -> bool {
        self.dual_stack || self.targets().any(|t| t.is_ipv4() != self.target.is_ipv4())
    }

    /// Bytes before the padding: the probe header, and the authentication tag with a key.
    pub fn header_len(&self) -> usize {
        self.wire.header_len(self.key.is_some())
    }

    /// Checks every value, naming the flag of the first bad one.
    pub fn validate(&self) -> Result<(), Error> {
        // Of both families: IPv4's limit, the lower.
        let max = self.targets().map(|t| max_payload(&t)).min().unwrap_or(0);
        if self.key.is_some() && !self.wire.can_sign() {
            return Err(Error::config(
                "--key-file",
                "authentication needs sonde's or STAMP's probe format (not --wire sockperf or text)",
            ));
        }
        let header = self.header_len();
        if self.size < header {
            return Err(Error::config(
                "--size",
                format!(
                    "{} bytes is below the {header}-byte probe header{}",
                    self.size,
                    if self.key.is_some() {
                        " and authentication tag"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if let Wire::Stamp(stamp) = self.wire {
            let base =
                self.wire.header_len(self.key.is_some()) - stamp.tlvs.fixed_len(self.key.is_some());
            stamp
                .tlvs
                .fits(self.size - base, self.key.is_some())
                .map_err(|reason| {
                    Error::config("--size", format!("{} bytes: {reason}", self.size))
                })?;
        }
        if self.size > max {
            let family = if max == MAX_UDP_PAYLOAD_V4 {
                "IPv4"
            } else {
                "IPv6"
            };
            return Err(Error::config(
                "--size",
                format!(
                    "{} bytes is above the {family} UDP maximum of {max}",
                    self.size
                ),
            ));
        }
        self.validate_targets()?;
        if let Some(bind) = self.bind.filter(|_| self.both_families()) {
            if bind.is_ipv4() || !bind.ip().is_unspecified() {
                return Err(Error::config(
                    "--bind",
                    format!("{bind}: targets of both families are reached from [::] only"),
                ));
            }
        }
        if let Some(bind) = self.bind.filter(|_| !self.both_families()) {
            if bind.is_ipv4() != self.target.is_ipv4() {
                return Err(Error::config(
                    "--bind",
                    format!(
                        "{bind} is not of the same address family as {}",
                        self.target
                    ),
                ));
            }
        }
        if self.connect && !self.also.is_empty() {
            return Err(Error::config(
                "--connect",
                "a connected socket has one peer: it cannot probe several targets",
            ));
        }
        if self.count == Some(0) {
            return Err(Error::config("--count", "must be at least 1"));
        }
        if self.duration.is_some_and(|d| d.is_zero()) {
            return Err(Error::config("--duration", "must be longer than 0"));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::config(
                "--timeout",
                "must be longer than 0 and at most 1h",
            ));
        }
        if let Pace::Rate(rate) = self.pace {
            if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
                return Err(Error::config(
                    "--rate",
                    format!("{rate} is not a rate in (0, {MAX_RATE}] probes/s"),
                ));
            }
        }
        if let Some(n) = self.inflight {
            if n == 0 || n > MAX_INFLIGHT {
                return Err(Error::config(
                    "--inflight",
                    format!("{n} is outside 1..={MAX_INFLIGHT}"),
                ));
            }
        }
        Ok(())
    }

    fn validate_targets(&self) -> Result<(), Error> {
        check_targets("TARGET", self.targets())
    }
}

/// Every target has a port and is there once (at the start, and in each list a reload reads);
/// `flag` names where they came from in the error.
pub fn check_targets(
    flag: &'static str,
    targets: impl IntoIterator<Item = SocketAddr>,
) -> Result<(), Error> {
    let mut seen = std::collections::HashSet::new();
    for target in targets {
        if target.port() == 0 {
            return Err(Error::config(
                flag,
                format!("{target}: port 0 cannot be pinged"),
            ));
        }
        if !seen.insert(target) {
            return Err(Error::config(flag, format!("{target} is given twice")));
        }
    }
    Ok(())
}

/// What `sonde echo` does.
#[derive(Debug, Clone, PartialEq)]
pub struct EchoConfig {
    pub bind: SocketAddr,
    pub buffers: Buffers,
    /// Share the address with other echo sockets (`SO_REUSEPORT`), one per thread.
    pub reuse_port: bool,
    /// Plain echo, or sockperf's server behaviour.
    pub wire: Wire,
    /// What is answered: allow list, rate limits, authentication.
    pub policy: Policy,
    /// Take datagrams a GSO sender sent together in one buffer, and reply the same way (`UDP_GRO`).
    pub gro: bool,
    /// STAMP: keep a sequence counter per session (RFC 8762 §4.3), so that senders can tell
    /// forward from backward loss; stateless (the sender's number copied) otherwise.
    pub stateful: bool,
    /// Count the DSCP and ECN each datagram arrived with (`--report-tos`).
    pub report_tos: bool,
    /// Answer with each request's DSCP, or a fixed one (`--dscp-reply`).
    pub dscp_reply: Option<DscpReply>,
}

/// The DSCP an echo answers with (`--dscp-reply`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DscpReply {
    /// The request's own (RFC 8972's "reflect the DSCP"), ECN not-ECT.
    Keep,
    /// This one, on every answer.
    Fixed(u8),
}

impl Default for EchoConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 9999)),
            buffers: Buffers::default(),
            reuse_port: false,
            wire: Wire::Sonde,
            policy: Policy::default(),
            gro: true,
            stateful: false,
            report_tos: false,
            dscp_reply: None,
        }
    }
}

/// What a reflector is told to accept (`sonde echo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// Only these sources are answered (empty: all).
    pub allow: Vec<IpNet>,
    pub per_source: Option<Limit>,
    pub total: Option<Limit>,
    /// Answer only probes with a valid tag.
    pub key: Option<Key>,
}

/// A token bucket: `rate` datagrams per second, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

impl Limit {
    /// `rate` per second with a burst of a tenth of a second's worth (at least 32).
    pub fn per_second(rate: f64) -> Self {
        Self {
            rate,
            burst: (rate / 10.0).max(32.0),
        }
    }
}

/// What `sonde impair` does.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub forward: SocketAddr,
    /// Client → server.
    pub upstream: ImpairSpec,
    /// Server → client.
    pub downstream: ImpairSpec,
    pub seed: u64,
    /// Which clients are relayed, and how much (as for the echo; no key).
    pub policy: Policy,
    /// Most clients relayed at once (each has its own upstream socket).
    pub max_clients: usize,
    /// A client not heard from for this long is forgotten (its socket closed).
    pub client_idle: Duration,
}

/// How datagrams are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    None,
    /// Each datagram independently, with this probability.
    Bernoulli(f64),
    /// netem's `gemodel p r 1-h 1-k`: a two-state chain. `p` moves good→bad, `r` bad→good;
    /// `loss_bad` (1-h) and `loss_good` (1-k) are the loss probabilities in each state.
    /// With `loss_bad = 1` and `loss_good = 0`, bursts have a mean length of `1 / r`.
    GilbertElliott {
        p: f64,
        r: f64,
        loss_bad: f64,
        loss_good: f64,
    },
}

/// The impairments of one direction. Probabilities are fractions (0.1 for 10%).
#[derive(Debug, Clone, PartialEq)]
pub struct ImpairSpec {
    pub loss: LossModel,
    pub delay_ns: u64,
    pub jitter_ns: u64,
    /// Share of datagrams sent without the delay (requires a delay to mean anything).
    pub reorder: f64,
    pub duplicate: f64,
    /// Link rate in bits per second.
    pub rate_bps: Option<f64>,
    /// Most datagrams held at once; more are dropped (as netem's `limit`).
    pub limit: usize,
}

impl Default for ImpairSpec {
    fn default() -> Self {
        Self {
            loss: LossModel::None,
            delay_ns: 0,
            jitter_ns: 0,
            reorder: 0.0,
            duplicate: 0.0,
            rate_bps: None,
            limit: 10_000,
        }
    }
}

impl ImpairSpec {
    /// Whether this spec changes nothing (datagrams pass straight through).
    pub fn is_transparent(&self) -> bool {
        *self
            == ImpairSpec {
                limit: self.limit,
                ..ImpairSpec::default()
            }
    }

    /// A short human description, e.g. `loss 10%, delay 5ms ± 1ms`.
    pub fn describe(&self) -> String {
        let pct = |x: f64| format!("{}%", (x * 1e6).round() / 1e4);
        let mut parts = Vec::new();
        match self.loss {
            LossModel::None => {}
            LossModel::Bernoulli(p) => parts.push(format!("loss {}", pct(p))),
            LossModel::GilbertElliott {
                p,
                r,
                loss_bad,
                loss_good,
            } => parts.push(format!(
                "loss gemodel p={} r={} 1-h={} 1-k={}",
                pct(p),
                pct(r),
                pct(loss_bad),
                pct(loss_good)
            )),
        }
        if self.delay_ns > 0 {
            let ms = |ns: u64| format!("{}ms", ns as f64 / 1e6);
            if self.jitter_ns > 0 {
                parts.push(format!(
                    "delay {} ± {}",
                    ms(self.delay_ns),
                    ms(self.jitter_ns)
                ));
            } else {
                parts.push(format!("delay {}", ms(self.delay_ns)));
            }
        }
        if self.reorder > 0.0 {
            parts.push(format!("reorder {}", pct(self.reorder)));
        }
        if self.duplicate > 0.0 {
            parts.push(format!("duplicate {}", pct(self.duplicate)));
        }
        if let Some(rate) = self.rate_bps {
            parts.push(format!("rate {} kbit/s", rate / 1e3));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PingConfig {
        PingConfig::new("127.0.0.1:9999".parse().unwrap())
    }

    fn flag_of(c: &PingConfig) -> &'static str {
        match c.validate() {
            Err(Error::Config { flag, .. }) => flag,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        cfg().validate().unwrap();
    }

    #[test]
    fn size_bounds_depend_on_family() {
        let mut c = cfg();
        c.size = crate::wire::HEADER_LEN - 1;
        assert_eq!(flag_of(&c), "--size");
        c.size = MAX_UDP_PAYLOAD_V4;
        c.validate().unwrap();
        c.size = MAX_UDP_PAYLOAD_V4 + 1;
        assert_eq!(flag_of(&c), "--size");
        c.target = "[::1]:9999".parse().unwrap();
        c.validate().unwrap();
        c.size = MAX_UDP_PAYLOAD_V6 + 1;
        assert_eq!(flag_of(&c), "--size");
    }

    #[test]
    fn each_bad_value_names_its_flag() {
        let mut c = cfg();
        c.pace = Pace::Rate(0.0);
        assert_eq!(flag_of(&c), "--rate");
        c.pace = Pace::Rate(f64::NAN);
        assert_eq!(flag_of(&c), "--rate");
        let mut c = cfg();
        c.count = Some(0);
        assert_eq!(flag_of(&c), "--count");
        let mut c = cfg();
        c.timeout = Duration::ZERO;
        assert_eq!(flag_of(&c), "--timeout");
        let mut c = cfg();
        c.inflight = Some(MAX_INFLIGHT + 1);
        assert_eq!(flag_of(&c), "--inflight");
        let mut c = cfg();
        c.bind = Some("[::1]:0".parse().unwrap());
        assert_eq!(flag_of(&c), "--bind");
        let mut c = cfg();
        c.target.set_port(0);
        assert_eq!(flag_of(&c), "TARGET");
    }

    #[test]
    fn default_inflight_covers_one_timeout_of_probes() {
        let mut c = cfg();
        c.pace = Pace::Rate(10_000.0);
        assert_eq!(c.inflight(), 10_064);
        c.pace = Pace::Rate(1e8);
        assert_eq!(c.inflight(), MAX_INFLIGHT);
        c.pace = Pace::Window;
        assert_eq!(c.inflight(), 1);
        c.inflight = Some(64);
        assert_eq!(c.inflight(), 64);
    }
}
