//! The options `ping` and `loopback` share, turned into typed pieces: the pinger's config, what
//! stdout gets, how often flows report, the key, the thresholds.

use super::args::{Format, ProbeArgs, SocketArgs, StampTlv, Timestamps, When, WireArg};
use crate::config::{Buffers, Pace, PingConfig};
use crate::error::Error;
use crate::output::threshold::Thresholds;
use crate::sys::{hardware_stamps, route_interface};
use crate::wire::auth::Key;
use crate::wire::stamp::tlv::{self, Tos};
use std::net::SocketAddr;
use std::time::Duration;

/// Defaults `sonde loopback` uses where the flags are silent: a fixed-rate run that keeps one
/// core busy and finishes in a few seconds.
pub(super) const LOOPBACK_RATE: f64 = 50_000.0;
pub(super) const LOOPBACK_DURATION: Duration = Duration::from_secs(5);

/// `--size` when not given (raised to the header where that is longer).
const DEFAULT_SIZE: usize = 64;

impl ProbeArgs {
    /// The typed config, signed with `key` when there is one.
    pub(super) fn keyed_config(
        &self,
        target: SocketAddr,
        loopback: bool,
        key: Option<Key>,
    ) -> Result<PingConfig, Error> {
        if self.socket.timestamps == Timestamps::Hardware {
            return Err(self.hardware_refused(target));
        }
        let mut cfg = self.config(target, loopback, self.stamp_tlvs()?);
        cfg.key = key;
        if self.size.is_none() {
            cfg.size = cfg.size.max(cfg.header_len());
        }
        Ok(cfg)
    }

    /// Why `--timestamps hardware` cannot be had toward `target`: the interface it goes out of
    /// (`--interface`, or the route's) has no hardware stamps, or sonde cannot use them yet.
    fn hardware_refused(&self, target: SocketAddr) -> Error {
        let why = |reason: String| Error::config("--timestamps", format!("hardware: {reason}"));
        let interface = match &self.interface {
            Some(name) => name.clone(),
            None => match route_interface(target) {
                Ok(name) => name,
                Err(e) => return why(format!("cannot tell which interface reaches {target}: {e}")),
            },
        };
        let toward = format!("{interface}, the interface toward {},", target.ip());
        match hardware_stamps(&interface) {
            Ok(h) if h.tx && h.rx => why(format!(
                "{toward} stamps packets in hardware (clock {}), but sonde does not read \
                 hardware times yet; kernel (the default) uses the kernel's software times",
                h.clock.map_or("unknown".into(), |c| format!("/dev/ptp{c}"))
            )),
            Ok(_) => why(format!(
                "{toward} does not stamp packets in hardware (`ethtool -T {interface}` lists \
                 what it can); kernel (the default) uses the kernel's software times"
            )),
            Err(e) => why(format!("cannot ask {interface} what it can stamp: {e}")),
        }
    }

    /// The TOS byte asked for with --tos, or --dscp and --ecn (each 0 when the other alone is
    /// given).
    fn tos(&self) -> Option<Tos> {
        if let Some(byte) = self.tos {
            return Some(Tos {
                dscp: byte >> 2,
                ecn: byte & 0b11,
            });
        }
        (self.dscp.is_some() || self.ecn.is_some()).then(|| Tos {
            dscp: self.dscp.unwrap_or(0),
            ecn: self.ecn.map_or(0, |e| e.bits()),
        })
    }

    /// The RFC 8972 TLVs of `--stamp-tlv` (STAMP only).
    fn stamp_tlvs(&self) -> Result<tlv::Request, Error> {
        if !self.stamp_tlv.is_empty() && self.socket.wire != WireArg::Stamp {
            return Err(Error::config(
                "--stamp-tlv",
                "TLVs are part of STAMP test packets: add --wire stamp",
            ));
        }
        let has = |t| self.stamp_tlv.contains(&t);
        Ok(tlv::Request {
            timestamp_info: has(StampTlv::TimestampInfo),
            class_of_service: has(StampTlv::Cos).then(|| self.tos().unwrap_or_default()),
            direct_measurement: has(StampTlv::Direct),
            padding: has(StampTlv::Padding),
        })
    }

    fn config(&self, target: SocketAddr, loopback: bool, tlvs: tlv::Request) -> PingConfig {
        let pace = match (self.rate, self.inflight) {
            (Some(rate), _) => Pace::Rate(rate),
            (None, Some(_)) => Pace::Window,
            (None, None) if loopback => Pace::Rate(LOOPBACK_RATE),
            (None, None) => Pace::Rate(1.0),
        };
        let duration = match (self.duration, self.count) {
            (None, None) if loopback => Some(LOOPBACK_DURATION),
            (d, _) => d,
        };
        PingConfig {
            target,
            also: Vec::new(),
            bind: None,
            size: self.size.unwrap_or(DEFAULT_SIZE),
            count: self.count,
            duration,
            pace,
            inflight: self.inflight,
            timeout: self.timeout,
            buffers: self.socket.buffers(),
            wire: self.socket.wire.with_stamp(self.stamp_clock, tlvs),
            tos: self.tos(),
            ttl: self.ttl,
            interface: self.interface.clone(),
            dont_fragment: self.df,
            connect: self.socket.connect,
            dual_stack: false,
            kernel_timestamps: self.socket.timestamps == Timestamps::Kernel,
            key: None,
            gso: self.socket.gso.into(),
            // A pinger takes replies coalesced only when asked (see --gro's help).
            gro: self.socket.gro == When::On,
        }
    }

    /// Per-probe lines: asked for, or few enough to read (a short count or a slow rate).
    pub(super) fn per_probe_lines(&self, cfg: &PingConfig) -> bool {
        if self.quiet || self.format() != Format::Text {
            return false;
        }
        let few = cfg.count.is_some_and(|n| n <= 100);
        let slow = matches!(cfg.pace, Pace::Rate(r) if r <= 20.0);
        self.verbose || few || slow
    }

    pub(super) fn format(&self) -> Format {
        match (self.json, self.format) {
            (true, _) => Format::Json,
            (false, format) => format.unwrap_or(Format::Text),
        }
    }

    /// How often flows report: as asked, or as the outputs that need intervals want it (a plot
    /// about 100 points over a run of known length, otherwise every second).
    pub(super) fn period(&self, cfg: &PingConfig) -> Option<Duration> {
        if self.interval.is_some() {
            return self.interval;
        }
        let needed = self.format() == Format::Jsonl
            || !self.export_hlog.is_empty()
            || self.metrics.is_some();
        if self.plot.is_some() && !needed {
            let length = cfg.duration.or_else(|| match (cfg.count, cfg.pace) {
                (Some(n), Pace::Rate(rate)) => Some(Duration::from_secs_f64(n as f64 / rate)),
                _ => None,
            });
            let period = length.map_or(Duration::from_secs(1), |l| l / 100);
            return Some(period.clamp(Duration::from_millis(10), Duration::from_secs(1)));
        }
        needed.then_some(Duration::from_secs(1))
    }

    pub(super) fn key(&self) -> Result<Option<Key>, Error> {
        self.key_file
            .as_deref()
            .map(|path| Key::load(path, self.insecure_key_file))
            .transpose()
    }

    pub(super) fn thresholds(&self) -> Thresholds {
        Thresholds {
            loss_pct: self.fail_loss.map(|f| f * 100.0),
            p50: self.fail_p50,
            p99: self.fail_p99,
            p999: self.fail_p999,
        }
    }
}

impl SocketArgs {
    pub(super) fn buffers(&self) -> Buffers {
        let default = Buffers::default();
        Buffers {
            rcv: self.rcvbuf.unwrap_or(default.rcv),
            snd: self.sndbuf.unwrap_or(default.snd),
        }
    }
}
