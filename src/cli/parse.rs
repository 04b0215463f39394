//! Value parsers for the flags: each says what it expected, so that clap's error names the flag
//! and the fix.

use super::args::{Buckets, LimitArg, Target};
use crate::config::{DscpReply, LossModel};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

pub(super) fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            "expected an address or network, e.g. 198.18.0.0/15, 127.0.0.1 or ::1/128".into()
        })
}

/// `off`, or a rate in datagrams per second.
pub(super) fn parse_limit(s: &str) -> Result<LimitArg, String> {
    if s == "off" {
        return Ok(LimitArg(None));
    }
    parse_rate(s)
        .map(|rate| LimitArg(Some(rate)))
        .map_err(|_| "expected datagrams per second above 0 (e.g. 10000), or off".into())
}

pub(super) fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let expected = "expected HOST:PORT, e.g. 127.0.0.1:9999 or [::1]:9999";
    if !s.contains(':') {
        return Err(expected.into());
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{expected} ({e})"))?
        .next()
        .ok_or_else(|| format!("{s} resolves to no address"))
}

/// A ping target: `HOST:PORT`, or a bare host (`HOST`, `[::1]`) whose port the probe format
/// may supply (STAMP's 862).
pub(super) fn parse_target(s: &str) -> Result<Target, String> {
    if let Ok(addr) = parse_addr(s) {
        return Ok(Target { addr, port: true });
    }
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    if host.parse::<std::net::Ipv6Addr>().is_err() && host.contains(':') {
        return parse_addr(s).map(|addr| Target { addr, port: true });
    }
    let expected =
        "expected HOST:PORT, e.g. 127.0.0.1:9999 or [::1]:9999 (HOST alone with --wire stamp)";
    (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("{expected} ({e})"))?
        .next()
        .map(|addr| Target { addr, port: false })
        .ok_or_else(|| format!("{s} resolves to no address"))
}

pub(super) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        Err("must be at least 1ms".into())
    } else {
        Ok(d)
    }
}

pub(super) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 250ms, 1m30s)"))
}

/// A byte count: `262144`, `512K`, `4M` (binary multiples).
pub(super) fn parse_size(s: &str) -> Result<usize, String> {
    let usage = "expected a size in bytes, e.g. 262144, 512K or 4M";
    let (number, scale) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1usize << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        _ => (s, 1),
    };
    let n: usize = number.parse().map_err(|_| usage.to_string())?;
    match n.checked_mul(scale) {
        Some(bytes) if bytes > 0 && bytes <= i32::MAX as usize / 2 => Ok(bytes),
        _ => Err("must be between 1 byte and 1G".into()),
    }
}

/// `10%`, `10` or `0.5%` as a fraction (0.1, 0.1, 0.005).
pub(super) fn parse_percent(s: &str) -> Result<f64, String> {
    let pct: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| "expected a percentage, e.g. 5% or 0.5%".to_string())?;
    if (0.0..=100.0).contains(&pct) {
        Ok(pct / 100.0)
    } else {
        Err("must be between 0% and 100%".into())
    }
}

/// netem's `gemodel p [r [1-h [1-k]]]`, written `gemodel:p,r,1-h,1-k` (percentages).
pub(super) fn parse_gemodel(s: &str) -> Result<LossModel, String> {
    let usage = "expected gemodel:p[,r[,1-h[,1-k]]] in percent, e.g. gemodel:1,30";
    let params = s.strip_prefix("gemodel:").ok_or(usage)?;
    let values = params
        .split(',')
        .map(parse_percent)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{usage}: {e}"))?;
    if values.is_empty() || values.len() > 4 {
        return Err(usage.into());
    }
    let p = values[0];
    let r = values.get(1).copied().unwrap_or(1.0 - p);
    if r == 0.0 {
        return Err("r must be above 0%: the bad state would never end".into());
    }
    Ok(LossModel::GilbertElliott {
        p,
        r,
        loss_bad: values.get(2).copied().unwrap_or(1.0),
        loss_good: values.get(3).copied().unwrap_or(0.0),
    })
}

/// A link rate in tc's units, as bits per second.
pub(super) fn parse_link_rate(s: &str) -> Result<f64, String> {
    let usage = "expected a rate such as 800kbit, 10mbit, 1gbit or 100kbps";
    let split = s.find(|c: char| c.is_ascii_alphabetic()).ok_or(usage)?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| usage)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(usage.into()),
    };
    let bps = number * scale;
    if bps.is_finite() && bps > 0.0 {
        Ok(bps)
    } else {
        Err("must be greater than 0".into())
    }
}

pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|_| "expected probes per second, e.g. 1000 or 0.5".to_string())?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err("must be greater than 0".into())
    }
}

/// A DSCP by name (ef, va, le, cs0..cs7, af11..af43) or number (0-63).
pub(super) fn parse_dscp_reply(s: &str) -> Result<DscpReply, String> {
    if s.eq_ignore_ascii_case("keep") {
        return Ok(DscpReply::Keep);
    }
    parse_dscp(s)
        .map(DscpReply::Fixed)
        .map_err(|e| format!("expected keep, or {}", e.trim_start_matches("expected ")))
}

/// `--metrics`: `PORT` (on loopback) or `ADDR:PORT`.
pub(super) fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    match s.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => parse_addr(s).map_err(|e| format!("expected PORT or ADDR:PORT: {e}")),
    }
}

/// `--metrics-buckets`: histogram bounds in seconds, comma-separated, rising, above zero.
pub(super) fn parse_buckets(s: &str) -> Result<Buckets, String> {
    let bounds = s
        .split(',')
        .map(|b| parse_duration(b.trim()).map(|d| d.as_secs_f64()))
        .collect::<Result<Vec<f64>, String>>()?;
    let rising = bounds.windows(2).all(|w| w[0] < w[1]);
    if bounds.is_empty() || !rising || bounds[0] <= 0.0 {
        return Err("expected rising durations above zero, e.g. 100us,1ms,10ms".into());
    }
    Ok(Buckets(bounds))
}

pub(super) fn parse_tos(s: &str) -> Result<u8, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse::<u8>(),
    };
    parsed.map_err(|_| "expected a TOS byte, 0-255 or 0x00-0xff".to_string())
}

pub(super) fn parse_dscp(s: &str) -> Result<u8, String> {
    let expected = || "expected a DSCP name (ef, va, le, cs0..cs7, af11..af43) or 0-63".to_string();
    let lower = s.to_ascii_lowercase();
    let digit = |c: Option<char>| c.and_then(|c| c.to_digit(10)).map(|d| d as u8);
    let dscp = match lower.as_str() {
        "ef" => 46,
        "va" => 44,
        "le" => 1,
        _ if lower.starts_with("cs") && lower.len() == 3 => {
            let n = digit(lower.chars().nth(2))
                .filter(|&n| n <= 7)
                .ok_or_else(expected)?;
            n * 8
        }
        _ if lower.starts_with("af") && lower.len() == 4 => {
            let class = digit(lower.chars().nth(2)).filter(|n| (1..=4).contains(n));
            let drop = digit(lower.chars().nth(3)).filter(|n| (1..=3).contains(n));
            match (class, drop) {
                (Some(c), Some(d)) => c * 8 + d * 2,
                _ => return Err(expected()),
            }
        }
        _ => s
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= 63)
            .ok_or_else(expected)?,
    };
    Ok(dscp)
}
