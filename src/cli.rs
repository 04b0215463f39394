//! The command line: clap definitions, and the glue from arguments to roles and reports.

// The doc comments below are clap's help texts: `[::1]:9999` and `[default: ...]` are literal.
#![allow(rustdoc::broken_intra_doc_links)]

use crate::config::{EchoConfig, Gso, Pace, PingConfig};
use crate::echo::Echo;
use crate::engine::{Engine, Role};
use crate::error::Error;
use crate::impairment::{ImpairSpec, LossModel};
use crate::net::Buffers;
use crate::pinger::{Pinger, ProbeEvent};
use crate::relay::{Relay, RelayConfig};
use crate::report;
use crate::summary::EchoSummary;
use crate::wire::Wire;
use clap::{Args, Parser, Subcommand};
use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// High-rate UDP round-trip measurement: echo server, pipelined pinger, and both in one process.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// UDP echo server (RFC 862): every datagram goes back to its sender, byte for byte
    Echo(EchoArgs),
    /// Measure round trips to any UDP echo server
    Ping(PingArgs),
    /// Echo server and pinger on loopback, in one process and one event loop: no setup
    Loopback(LoopbackArgs),
    /// Relay datagrams between a client and a server, impairing them like netem, in userspace
    Impair(ImpairArgs),
    /// Combine HdrHistogram interval logs (--export-hlog, from any runs or hosts) into one summary
    Merge(MergeArgs),
    /// Chart saved results (CSV exports, interval logs, JSON summaries or streams, .hgrm files)
    /// as SVG; several inputs are compared on one chart
    Plot(PlotArgs),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. sonde man > sonde.1
    Man,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Interval logs written by --export-hlog (or any HdrHistogram V2 interval log); - for stdin
    #[arg(value_name = "LOG", required = true)]
    pub logs: Vec<String>,
    /// Write the merged distribution in .hgrm format to FILE; - for stdout [repeatable]
    #[arg(long, value_name = "FILE")]
    pub export_hgrm: Vec<String>,
    /// Print the merged summary as one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// Files sonde wrote: --export-csv, --export-hlog, --json/--export-json, --format jsonl, .hgrm
    #[arg(value_name = "INPUT", required = true)]
    pub inputs: Vec<String>,
    /// The SVG to write; - for stdout
    #[arg(short, long, value_name = "FILE.svg")]
    pub output: String,
    /// Chart title
    #[arg(long, default_value = "sonde")]
    pub title: String,
    /// Legend names for the inputs, in order [default: the file names]
    #[arg(long, value_name = "NAME")]
    pub label: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImpairArgs {
    /// Address clients send to
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub listen: SocketAddr,
    /// Server the datagrams are relayed to
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub forward: SocketAddr,
    /// Random (Bernoulli) loss, e.g. 5%
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub loss: Option<f64>,
    /// Gilbert-Elliott loss as netem writes it: gemodel:p[,r[,1-h[,1-k]]] in percent
    /// (defaults r = 100-p, 1-h = 100, 1-k = 0: mean burst length 100/r)
    #[arg(long, value_name = "MODEL", value_parser = parse_gemodel, conflicts_with = "loss")]
    pub loss_model: Option<LossModel>,
    /// Added delay (humantime: 5ms, 250us)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Uniform jitter around the delay: delay ± jitter
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "delay")]
    pub jitter: Option<Duration>,
    /// Share of datagrams sent without the delay, overtaking the others (netem's reorder)
    #[arg(long, value_name = "PCT", value_parser = parse_percent, requires = "delay")]
    pub reorder: Option<f64>,
    /// Share of datagrams sent twice
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub duplicate: Option<f64>,
    /// Link rate, tc units: 800kbit, 10mbit, 1gbit (bits/s) or 100kbps (bytes/s)
    #[arg(long, value_name = "RATE", value_parser = parse_link_rate)]
    pub rate: Option<f64>,
    /// Most datagrams held per direction; more are dropped
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub limit: usize,
    /// Which traffic to impair: both ways, up (client to server) or down (server to client)
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    pub direction: Direction,
    /// Seed for every random decision: the same seed and traffic give the same run
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Print the counters on exit as one JSON object
    #[arg(long)]
    pub json: bool,
    /// Print nothing but the counters on exit
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Direction {
    Both,
    Up,
    Down,
}

#[derive(Debug, Args)]
pub struct EchoArgs {
    /// Address to listen on; a wildcard (0.0.0.0:PORT, [::]:PORT) must be asked for explicitly
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:9999", value_parser = parse_addr)]
    pub bind: SocketAddr,
    /// Print the counters on exit as one JSON object (the banner goes to stderr)
    #[arg(long)]
    pub json: bool,
    /// Print nothing but the counters on exit
    #[arg(short, long)]
    pub quiet: bool,
    /// Echo threads: one SO_REUSEPORT socket and one poll loop each, pinned to a core
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    /// Cores to pin threads to, in turn (e.g. 0,1 or 2-5) [default: every core in turn]
    #[arg(long, value_name = "LIST", value_parser = crate::threads::parse_cpus)]
    pub cpus: Option<crate::threads::CpuList>,
    /// Answer only sources in this network (e.g. 198.18.0.0/15, ::1, 127.0.0.1) [repeatable;
    /// default: every source]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub allow: Vec<ipnet::IpNet>,
    /// Datagrams per second answered per source IP, or off [default: off on a loopback address,
    /// 10000 otherwise]
    #[arg(long, value_name = "PPS|off", value_parser = parse_limit, allow_negative_numbers = true)]
    pub limit_per_source: Option<LimitArg>,
    /// Datagrams per second answered in all, or off [default: off on a loopback address, 100000
    /// otherwise]
    #[arg(long, value_name = "PPS|off", value_parser = parse_limit, allow_negative_numbers = true)]
    pub limit_total: Option<LimitArg>,
    /// Answer only probes signed with the key in FILE (sonde ping --key-file with the same file)
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<String>,
    /// Print the counters (echoed, refused by reason) every DURATION, as well as at the end
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub stats_interval: Option<Duration>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

/// Default limits of a reflector reachable from the network (`sonde echo` bound to anything but
/// loopback), in datagrams per second.
pub const DEFAULT_LIMIT_PER_SOURCE: f64 = 10_000.0;
pub const DEFAULT_LIMIT_TOTAL: f64 = 100_000.0;

fn parse_cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|net| net.trunc())
        .map_err(|_| {
            "expected an address or network, e.g. 198.18.0.0/15, 127.0.0.1 or ::1/128".into()
        })
}

/// A rate limit as given: datagrams per second, or `None` for off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitArg(pub Option<f64>);

/// `off`, or a rate in datagrams per second.
fn parse_limit(s: &str) -> Result<LimitArg, String> {
    if s == "off" {
        return Ok(LimitArg(None));
    }
    parse_rate(s)
        .map(|rate| LimitArg(Some(rate)))
        .map_err(|_| "expected datagrams per second above 0 (e.g. 10000), or off".into())
}

/// Socket and loop options shared by every role that measures or serves.
#[derive(Debug, Args)]
pub struct SocketArgs {
    /// Receive buffer to ask the kernel for (bytes; K, M suffixes); the summary says what it granted
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub rcvbuf: Option<usize>,
    /// Send buffer to ask the kernel for (bytes; K, M suffixes)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub sndbuf: Option<usize>,
    /// Never sleep: spin on non-blocking polls for the lowest, steadiest latency (costs a core)
    #[arg(long)]
    pub busy_poll: bool,
    /// Probe format: sonde's own, or sockperf's (to measure, or serve, sockperf's peer)
    #[arg(long, value_name = "FORMAT", default_value = "sonde", value_parser = parse_wire)]
    pub wire: Wire,
    /// Where receive times come from: the kernel (excludes time queued in the socket) or user
    /// space (after the receive call returns, as most tools measure)
    #[arg(long, value_name = "SOURCE", default_value = "kernel", value_parser = ["kernel", "user"])]
    pub timestamps: String,
    /// Pinger: send a run of probes as one buffer the kernel cuts up (UDP GSO): one trip
    /// through the stack for the run. auto: toward loopback only (on a real path a qdisc or
    /// firewall would see, and drop or delay, the run as one packet)
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub gso: String,
    /// Take datagrams a GSO sender sent together in one buffer (UDP GRO). auto: on for an echo
    /// (it replies to them together); off for a pinger, where a coalesced buffer dropped for want
    /// of room would count once in local_drops, however many replies it held
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = ["auto", "on", "off"])]
    pub gro: String,
}

impl SocketArgs {
    fn buffers(&self) -> Buffers {
        let default = Buffers::default();
        Buffers {
            rcv: self.rcvbuf.unwrap_or(default.rcv),
            snd: self.sndbuf.unwrap_or(default.snd),
        }
    }
}

#[derive(Debug, Args)]
pub struct PingArgs {
    /// Echo server to measure, HOST:PORT (e.g. 127.0.0.1:9999, [::1]:9999, localhost:9999)
    #[arg(value_name = "HOST:PORT", value_parser = parse_addr)]
    pub target: SocketAddr,
    /// Local address to send from
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub bind: Option<SocketAddr>,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub struct LoopbackArgs {
    /// Use ::1 instead of 127.0.0.1
    #[arg(short = '6', long)]
    pub ipv6: bool,
    #[command(flatten)]
    pub probe: ProbeArgs,
}

/// Probe options shared by `ping` and `loopback`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Datagram size in bytes, the 32-byte probe header included
    #[arg(
        short,
        long,
        value_name = "BYTES",
        default_value_t = 64,
        allow_negative_numbers = true
    )]
    pub size: usize,
    /// Stop after N probes
    #[arg(
        short,
        long,
        value_name = "N",
        conflicts_with = "duration",
        allow_negative_numbers = true
    )]
    pub count: Option<u64>,
    /// Stop sending after this long (humantime: 10s, 1m30s, 500ms)
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Open-loop fixed rate, probes per second [ping default: 1; with --inflight alone: closed loop]
    #[arg(short, long, value_name = "PPS", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Most probes in flight; without --rate, a closed-loop window sending as fast as replies come
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub inflight: Option<usize>,
    /// Per-probe timeout: no reply by then counts as lost, a reply after it as late
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// One line per probe, whatever the rate
    #[arg(short, long)]
    pub verbose: bool,
    /// Only the final summary (no per-probe or interval lines, no progress bar)
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print the summary as one JSON object on stdout (and nothing else there): --format json
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// What stdout gets: text, json (the summary as one object) or jsonl (one object per
    /// interval, then the summary: {"event": "interval"|"summary", "data": ...})
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<Format>,
    /// Report every interval: one line (or JSON object) with its sent, received, loss, p50, p99
    /// and max [jsonl, hlog: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Write the summary as JSON (the schema of --json) to FILE; - for stdout [repeatable]
    #[arg(long, value_name = "FILE")]
    pub export_json: Vec<String>,
    /// Stream one CSV row per probe to FILE: flow, seq, scheduled and actual send, RTT, status
    #[arg(long, value_name = "FILE")]
    pub export_csv: Vec<String>,
    /// Write the RTT percentile distribution in HdrHistogram's .hgrm text format to FILE
    #[arg(long, value_name = "FILE")]
    pub export_hgrm: Vec<String>,
    /// Write an HdrHistogram interval log (compressed V2, one histogram per interval) to FILE
    #[arg(long, value_name = "FILE")]
    pub export_hlog: Vec<String>,
    /// Draw RTT over time (losses and outages marked) and the percentile distribution to an SVG
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<String>,
    /// Exit with status 3 if the loss is above PCT (e.g. 0.1%)
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub fail_loss: Option<f64>,
    /// Exit with status 3 if the median RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub fail_p50: Option<Duration>,
    /// Exit with status 3 if the 99th percentile RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub fail_p99: Option<Duration>,
    /// Exit with status 3 if the 99.9th percentile RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub fail_p999: Option<Duration>,
    /// No progress bar (there is none anyway unless stderr is a terminal)
    #[arg(long)]
    pub no_progress: bool,
    /// Sign probes with the key in FILE and accept only signed replies (the echo needs the same
    /// --key-file); at least 16 bytes, one trailing newline ignored
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<String>,
    /// Independent flows, each with its own socket, port and poll loop, pinned to a core; --rate,
    /// --count and --inflight apply to each [ping: 1; loopback: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub flows: Option<u16>,
    /// Cores to pin flows to, in turn (e.g. 0,1 or 2-5) [default: every core in turn]
    #[arg(long, value_name = "LIST", value_parser = crate::threads::parse_cpus)]
    pub cpus: Option<crate::threads::CpuList>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
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

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(1) {
        Err("must be at least 1ms".into())
    } else {
        Ok(d)
    }
}

/// What stdout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Jsonl,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (e.g. 10s, 250ms, 1m30s)"))
}

fn parse_wire(s: &str) -> Result<Wire, String> {
    match s {
        "sonde" => Ok(Wire::Sonde),
        "sockperf" => Ok(Wire::Sockperf),
        _ => Err("expected sonde or sockperf".into()),
    }
}

/// A byte count: `262144`, `512K`, `4M` (binary multiples).
fn parse_size(s: &str) -> Result<usize, String> {
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
fn parse_percent(s: &str) -> Result<f64, String> {
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
fn parse_gemodel(s: &str) -> Result<LossModel, String> {
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
fn parse_link_rate(s: &str) -> Result<f64, String> {
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

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s
        .parse()
        .map_err(|_| "expected probes per second, e.g. 1000 or 0.5".to_string())?;
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err("must be greater than 0".into())
    }
}

/// Defaults `sonde loopback` uses where the flags are silent: a fixed-rate run that keeps one
/// core busy and finishes in a few seconds.
pub const LOOPBACK_RATE: f64 = 50_000.0;
pub const LOOPBACK_DURATION: Duration = Duration::from_secs(5);

impl ProbeArgs {
    fn config(&self, target: SocketAddr, loopback: bool) -> PingConfig {
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
            bind: None,
            size: self.size,
            count: self.count,
            duration,
            pace,
            inflight: self.inflight,
            timeout: self.timeout,
            buffers: self.socket.buffers(),
            wire: self.socket.wire,
            kernel_timestamps: self.socket.timestamps == "kernel",
            key: None,
            gso: match self.socket.gso.as_str() {
                "on" => Gso::On,
                "off" => Gso::Off,
                _ => Gso::Auto,
            },
            gro: self.socket.gro == "on",
        }
    }

    /// Per-probe lines: asked for, or few enough to read (a short count or a slow rate).
    fn per_probe_lines(&self, cfg: &PingConfig) -> bool {
        if self.quiet || self.format() != Format::Text {
            return false;
        }
        let few = cfg.count.is_some_and(|n| n <= 100);
        let slow = matches!(cfg.pace, Pace::Rate(r) if r <= 20.0);
        self.verbose || few || slow
    }

    fn format(&self) -> Format {
        match (self.json, self.format) {
            (true, _) => Format::Json,
            (false, format) => format.unwrap_or(Format::Text),
        }
    }

    /// How often flows report: as asked, or as the outputs that need intervals want it (a plot
    /// about 100 points over a run of known length, otherwise every second).
    fn period(&self, cfg: &PingConfig) -> Option<Duration> {
        if self.interval.is_some() {
            return self.interval;
        }
        let needed = self.format() == Format::Jsonl || !self.export_hlog.is_empty();
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

    fn key(&self) -> Result<Option<crate::auth::Key>, Error> {
        self.key_file
            .as_deref()
            .map(crate::auth::Key::load)
            .transpose()
    }

    fn thresholds(&self) -> crate::threshold::Thresholds {
        crate::threshold::Thresholds {
            loss_pct: self.fail_loss.map(|f| f * 100.0),
            p50: self.fail_p50,
            p99: self.fail_p99,
            p999: self.fail_p999,
        }
    }
}

/// Writes to stdout, ignoring a closed pipe (`sonde ... | head` must not panic).
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Parses the command line and runs it; returns the exit status.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("sonde: error: {e}");
            e.exit_code()
        }
    }
}

/// Prints a clap error as one line naming the flag; help and version go out as clap made them.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            2
        } else {
            0
        };
    }
    let rendered = e.render().to_string();
    let message = rendered
        .split("\n\n")
        .next()
        .unwrap_or(&rendered)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("sonde: error: {message} (see sonde --help)");
    2
}

fn run(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Echo(args) => echo(args).map(|()| 0),
        Command::Ping(args) => {
            let mut cfg = args.probe.config(args.target, false);
            cfg.bind = args.bind;
            cfg.key = args.probe.key()?;
            cfg.validate()?;
            let flows = (0..args.probe.flows.unwrap_or(1))
                .map(|_| {
                    Ok(Flow {
                        pinger: Pinger::new(cfg.clone())?,
                        echo: None,
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            ping(&args.probe, flows)
        }
        Command::Impair(args) => impair(args).map(|()| 0),
        Command::Merge(args) => {
            let (summary, total) = crate::merge::merge(&args.logs)?;
            out(&if args.json {
                report::json(&summary) + "\n"
            } else {
                report::merge_text(&summary)
            });
            let hgrm = crate::export::hgrm::render(total.histogram());
            crate::export::write_all("--export-hgrm", &args.export_hgrm, &hgrm)?;
            Ok(0)
        }
        Command::Plot(args) => {
            if args.label.len() > args.inputs.len() {
                return Err(Error::config("--label", "more labels than inputs"));
            }
            let mut runs = Vec::new();
            for (i, path) in args.inputs.iter().enumerate() {
                let mut run = crate::plot::Run::load(path)?;
                if let Some(label) = args.label.get(i) {
                    run.label = label.clone();
                }
                runs.push(run);
            }
            crate::plot::render("--output", &args.output, &args.title, &runs)?;
            Ok(0)
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "sonde", &mut script);
            out(&String::from_utf8_lossy(&script));
            Ok(0)
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
                .render(&mut page)
                .map_err(|e| Error::Setup("render the manual page", e))?;
            out(&String::from_utf8_lossy(&page));
            Ok(0)
        }
        Command::Loopback(args) => {
            let ip: SocketAddr = if args.ipv6 { "[::1]:0" } else { "127.0.0.1:0" }
                .parse()
                .expect("literal address");
            let cores = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
            let n = args.probe.flows.map_or(cores, usize::from);
            let key = args.probe.key()?;
            let flows = (0..n)
                .map(|_| {
                    // The socket flags are the pinger's; the in-process echo keeps the defaults
                    // and speaks the same wire format (and checks the same key).
                    let echo = Echo::with_config(&EchoConfig {
                        bind: ip,
                        wire: args.probe.socket.wire,
                        policy: crate::guard::Policy {
                            key: key.clone(),
                            ..Default::default()
                        },
                        ..EchoConfig::default()
                    })?;
                    let mut cfg = args.probe.config(echo.local_addr(), true);
                    cfg.key = key.clone();
                    cfg.validate()?;
                    Ok(Flow {
                        pinger: Pinger::new(cfg)?,
                        echo: Some(echo),
                    })
                })
                .collect::<Result<Vec<_>, Error>>()?;
            ping(&args.probe, flows)
        }
    }
}

fn echo(args: EchoArgs) -> Result<(), Error> {
    let threads = usize::from(args.threads);
    let key = args
        .key_file
        .as_deref()
        .map(crate::auth::Key::load)
        .transpose()?;
    if key.is_some() && args.socket.wire != Wire::Sonde {
        return Err(Error::config(
            "--key-file",
            "authentication needs sonde's probe format (not --wire sockperf)",
        ));
    }
    // Reachable from the network: limits on unless lifted. On loopback only this host's own
    // processes can reach it, and the machine is measuring itself.
    let exposed = !args.bind.ip().is_loopback();
    let limit = |asked: Option<LimitArg>, default: f64| match asked {
        Some(LimitArg(limit)) => limit,
        None => exposed.then_some(default),
    };
    let per_source = limit(args.limit_per_source, DEFAULT_LIMIT_PER_SOURCE);
    // SO_REUSEPORT keeps a source address on one thread; the total is shared out.
    let total = limit(args.limit_total, DEFAULT_LIMIT_TOTAL).map(|t| t / threads as f64);
    let mut cfg = EchoConfig {
        bind: args.bind,
        buffers: args.socket.buffers(),
        reuse_port: threads > 1,
        wire: args.socket.wire,
        policy: crate::guard::Policy {
            allow: args.allow.clone(),
            per_source: per_source.map(crate::guard::Limit::per_second),
            total: total.map(crate::guard::Limit::per_second),
            key,
        },
        gro: args.socket.gro != "off",
    };
    let first = Echo::with_config(&cfg)?;
    // The others share the address the first one got (its real port when 0 was asked for).
    cfg.bind = first.local_addr();
    let mut echoes = vec![first];
    for _ in 1..threads {
        echoes.push(Echo::with_config(&cfg)?);
    }
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Option<(u64, EchoSummary)>)>();
    if let Some(period) = args.stats_interval {
        for (i, echo) in echoes.iter_mut().enumerate() {
            let tx = tx.clone();
            echo.report_stats(period, move |index, summary| {
                let _ = tx.send((i, Some((index, summary))));
            });
        }
    }
    let banner = echo_banner(&echoes[0], cfg.bind, threads, exposed);
    let placement = crate::threads::placement(threads, args.cpus.as_ref().map(|c| c.0.as_slice()))?;
    let busy_poll = args.socket.busy_poll;
    let (quiet, json) = (args.quiet, args.json);
    let results = crate::threads::run_pinned(
        echoes.into_iter().enumerate().collect(),
        &placement,
        || {
            // With --json stdout holds only JSON: the banner goes to stderr.
            match (quiet, json) {
                (true, _) => {}
                (false, false) => out(&banner),
                (false, true) => eprint!("{banner}"),
            }
            print_echo_stats(rx, threads, json);
        },
        |(i, mut echo): (usize, Echo), barrier| {
            // Sent even if this thread fails: the stats printer waits for every thread.
            let _finished = OnDrop(|| {
                let _ = tx.send((i, None));
            });
            let engine = loop_for_thread(busy_poll);
            barrier.wait();
            let result = engine.and_then(|mut e| e.run(&mut [&mut echo]).map(|_| ()));
            (echo.summary(), result)
        },
    );
    let parts: Vec<_> = results.iter().map(|(s, _)| s.clone()).collect();
    let total = crate::echo::merge(&parts);
    out(&if args.json {
        report::json(&total) + "\n"
    } else {
        report::echo_text(&total)
    });
    results.into_iter().try_for_each(|(_, r)| r)
}

/// Runs a closure when dropped (on unwinding too).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn echo_banner(echo: &Echo, bind: SocketAddr, threads: usize, exposed: bool) -> String {
    let scope = if bind.ip().is_unspecified() {
        " (all interfaces)"
    } else {
        ""
    };
    let workers = if threads > 1 {
        format!(", {threads} threads")
    } else {
        String::new()
    };
    let mut banner = format!(
        "sonde echo: listening on {bind}{scope}{workers}; Ctrl-C prints the counters and stops\n"
    );
    let p = echo.summary();
    let rate = |limit: Option<f64>| limit.map_or("no limit".to_string(), |r| format!("{r}/s"));
    let sources = if p.allow.is_empty() {
        "every source".to_string()
    } else {
        p.allow.join(", ")
    };
    let total = p.total_limit_pps.map(|t| t * threads as f64);
    banner += &format!(
        "sonde echo: {}answering {sources}; per source {}, in all {}{}\n",
        if exposed {
            "not loopback: reachable from the network; "
        } else {
            ""
        },
        rate(p.per_source_limit_pps),
        rate(total),
        if p.authenticated {
            "; signed probes only"
        } else {
            ""
        }
    );
    banner
}

/// Prints `--stats-interval` reports: report `k` once every running thread has sent its own.
/// Returns when every thread has finished.
fn print_echo_stats(
    rx: std::sync::mpsc::Receiver<(usize, Option<(u64, EchoSummary)>)>,
    threads: usize,
    json: bool,
) {
    let mut running = vec![true; threads];
    let mut pending: std::collections::BTreeMap<u64, Vec<EchoSummary>> = Default::default();
    while running.iter().any(|&r| r) {
        let Ok((thread, message)) = rx.recv() else {
            return;
        };
        match message {
            Some((index, summary)) => pending.entry(index).or_default().push(summary),
            None => running[thread] = false,
        }
        let live = running.iter().filter(|&&r| r).count();
        while let Some(entry) = pending.first_entry() {
            if entry.get().len() < live.max(1) && live > 0 {
                break;
            }
            let total = crate::echo::merge(&entry.remove());
            out(&if json {
                report::json_event("stats", &total) + "\n"
            } else {
                report::echo_stats_line(&total) + "\n"
            });
        }
    }
}

/// A poll loop for one measurement thread: stops on Ctrl-C/SIGTERM like every other thread.
fn loop_for_thread(busy_poll: bool) -> Result<Engine, Error> {
    let mut engine = Engine::new()?;
    engine.stop_on_signals()?;
    engine.busy_poll(busy_poll);
    Ok(engine)
}

/// Runs one service role until Ctrl-C or SIGTERM, then prints its counters as JSON or text.
/// The banner goes out once the signal handlers are in place, so a Ctrl-C sent on seeing it is
/// never the default, silent one.
fn serve<R: Role, S: serde::Serialize>(
    role: &mut R,
    banner: Option<String>,
    json: bool,
    summarize: impl Fn(&R) -> S,
    text: impl Fn(&S) -> String,
) -> Result<(), Error> {
    let mut engine = Engine::new()?;
    engine.stop_on_signals()?;
    if let Some(banner) = banner {
        out(&banner);
    }
    let result = engine.run(&mut [role]);
    let summary = summarize(role);
    out(&if json {
        report::json(&summary) + "\n"
    } else {
        text(&summary)
    });
    result.map(|_| ())
}

/// One pinger, with the in-process echo it measures in `sonde loopback`.
struct Flow {
    pinger: Pinger<'static>,
    echo: Option<Echo>,
}

fn ping(args: &ProbeArgs, mut flows: Vec<Flow>) -> Result<i32, Error> {
    use crate::export::{self, csv, hgrm, hlog};
    use crate::follow::{self, FinishGuard, Length, Message, Outputs, Progress};
    use std::sync::{atomic::AtomicU64, mpsc, Arc};

    let n = flows.len();
    let loopback = flows[0].echo.is_some();
    let format = args.format();
    let cfg = flows[0].pinger.config().clone();
    let per_probe = args.per_probe_lines(&cfg) && (n == 1 || args.verbose);
    // Every file is opened before any traffic: a bad path fails fast, with nothing lost. (The
    // summary's files are written at the end; creating them now proves they can be.)
    let at_end = [
        ("--export-json", &args.export_json[..]),
        ("--export-hgrm", &args.export_hgrm[..]),
        ("--plot", args.plot.as_slice()),
    ];
    for (flag, paths) in at_end {
        for path in paths.iter().filter(|p| *p != "-") {
            export::create(flag, path)?;
        }
    }
    let csvs = args
        .export_csv
        .iter()
        .map(|path| Ok(csv::SharedCsv::new(export::create("--export-csv", path)?)))
        .collect::<Result<Vec<_>, Error>>()?;
    let hlog = match args.export_hlog.is_empty() {
        true => None,
        false => Some(hlog::Writer::create(
            &args.export_hlog,
            std::time::SystemTime::now(),
        )?),
    };
    let period = args.period(&cfg);
    let (tx, rx) = mpsc::channel();
    let mut progress_counters = Vec::new();
    let show_progress = !args.quiet
        && !args.no_progress
        && !per_probe
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    // For the plot: when lost probes were sent (a bounded sample per flow).
    let lost_marks: Vec<Arc<std::sync::Mutex<Vec<u64>>>> = (0..n).map(|_| Arc::default()).collect();
    let plot = args.plot.is_some();
    for (i, flow) in flows.iter_mut().enumerate() {
        if per_probe || !csvs.is_empty() || plot {
            let marks = lost_marks[i].clone();
            let prefix = if n > 1 {
                format!("flow {i}: ")
            } else {
                String::new()
            };
            let mut rows: Vec<_> = csvs
                .iter()
                .map(|c| csv::ProbeRows::new(i, c.clone()))
                .collect();
            flow.pinger.observe(move |event| {
                if per_probe {
                    out(&format!("{prefix}{}\n", report::probe_line(event)));
                }
                rows.iter_mut().for_each(|r| r.record(event));
                if let (true, ProbeEvent::Lost { sent_ns, .. }) = (plot, event) {
                    let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
                    if marks.len() < crate::plot::MAX_LOSS_MARKS / n {
                        marks.push(*sent_ns);
                    }
                }
            });
        }
        if let Some(period) = period {
            let tx = tx.clone();
            flow.pinger.report_intervals(period, move |report| {
                let _ = tx.send(Message::Interval(i, Box::new(report)));
            });
        }
        // Only a bar counting probes needs the flows to count for it.
        if show_progress && cfg.count.is_some() {
            let counter = Arc::new(AtomicU64::new(0));
            flow.pinger.count_progress(counter.clone());
            progress_counters.push(counter);
        }
    }
    let length = match (cfg.count, cfg.duration) {
        (Some(count), _) => Some(Length::Probes(count * n as u64, progress_counters)),
        (None, Some(d)) => Some(Length::Time(d)),
        (None, None) => None,
    };
    let outputs = Outputs {
        lines: args.interval.is_some() && format == Format::Text && !args.quiet,
        jsonl: format == Format::Jsonl,
        hlog,
        progress: length
            .filter(|_| show_progress)
            .and_then(Progress::on_terminal),
    };
    let banner = (!args.quiet && format == Format::Text).then(|| header(&flows, loopback));
    let placement = crate::threads::placement(n, args.cpus.as_ref().map(|c| c.0.as_slice()))?;
    let busy_poll = args.socket.busy_poll;
    let mut followed = None;
    let results = crate::threads::run_pinned(
        flows.into_iter().enumerate().collect(),
        &placement,
        || {
            if let Some(banner) = banner {
                out(&banner);
            }
            followed = Some(follow::follow(rx, n, outputs));
        },
        |(i, mut flow): (usize, Flow), barrier| {
            let _finished = FinishGuard {
                flow: i,
                tx: tx.clone(),
            };
            let engine = loop_for_thread(busy_poll);
            barrier.wait();
            let result = engine.and_then(|mut e| {
                match flow.echo.as_mut() {
                    Some(echo) => e.run(&mut [echo, &mut flow.pinger]),
                    None => e.run(&mut [&mut flow.pinger]),
                }
                .map(|_| ())
            });
            flow.pinger.stop_observing();
            (flow, result)
        },
    );
    let (flows, outcomes): (Vec<Flow>, Vec<Result<(), Error>>) = results.into_iter().unzip();
    for csv in &csvs {
        csv.finish()
            .map_err(|e| Error::file("--export-csv", "write", "the CSV export", e))?;
    }
    // A fault ends the run, but what was measured until then is still printed and written.
    let followed = followed.expect("the following thread ran");
    let intervals = followed.as_deref().unwrap_or_default();
    let fault = outcomes.into_iter().find_map(Result::err);
    let pingers: Vec<&Pinger> = flows.iter().map(|f| &f.pinger).collect();
    let summary = crate::pinger::combine(&pingers);
    if summary.counters.sent + summary.counters.not_sent == 0 {
        return fault.map_or(Ok(0), Err);
    }
    match format {
        Format::Json => out(&(report::json(&summary) + "\n")),
        Format::Jsonl => out(&(report::json_event("summary", &summary) + "\n")),
        Format::Text => {
            out(&report::ping_text(&summary));
            if loopback {
                let echoes: Vec<_> = flows
                    .iter()
                    .filter_map(|f| f.echo.as_ref().map(Echo::summary))
                    .collect();
                let mut total = crate::echo::merge(&echoes);
                if echoes.len() > 1 {
                    total.bind = format!("{} in-process sockets", echoes.len());
                }
                out(&report::echo_text(&total));
            }
        }
    }
    export::write_all(
        "--export-json",
        &args.export_json,
        &(report::json(&summary) + "\n"),
    )?;
    let rtt = crate::pinger::merged_rtt(&pingers);
    if !args.export_hgrm.is_empty() {
        export::write_all(
            "--export-hgrm",
            &args.export_hgrm,
            &hgrm::render(rtt.histogram()),
        )?;
    }
    if let Some(path) = &args.plot {
        let lost: Vec<u64> = lost_marks
            .iter()
            .flat_map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect();
        let run = crate::plot::Run::live(&summary, intervals, &lost, rtt.histogram());
        let title = format!(
            "sonde {}: {} probes of {} bytes, {}",
            summary.target,
            summary.counters.sent,
            summary.size_bytes,
            match summary.rate_pps {
                Some(rate) => format!("{rate}/s"),
                None => format!("window {}", summary.inflight_max),
            }
        );
        crate::plot::render("--plot", path, &title, &[run])?;
    }
    if let Some(fault) = fault {
        return Err(fault);
    }
    followed?;
    let crossed = args.thresholds().crossed(&summary);
    for line in &crossed {
        eprintln!("sonde: threshold crossed: {line}");
    }
    Ok(if crossed.is_empty() {
        0
    } else {
        crate::threshold::EXIT_CROSSED
    })
}

fn impair(args: ImpairArgs) -> Result<(), Error> {
    let loss = match (args.loss, args.loss_model) {
        (Some(p), _) => LossModel::Bernoulli(p),
        (None, Some(model)) => model,
        (None, None) => LossModel::None,
    };
    let spec = ImpairSpec {
        loss,
        delay_ns: args.delay.map_or(0, |d| d.as_nanos() as u64),
        jitter_ns: args.jitter.map_or(0, |d| d.as_nanos() as u64),
        reorder: args.reorder.unwrap_or(0.0),
        duplicate: args.duplicate.unwrap_or(0.0),
        rate_bps: args.rate,
        limit: args.limit,
    };
    if args.limit == 0 {
        return Err(Error::config("--limit", "must be at least 1"));
    }
    let clear = ImpairSpec {
        limit: args.limit,
        ..ImpairSpec::default()
    };
    let (upstream, downstream) = match args.direction {
        Direction::Both => (spec.clone(), spec),
        Direction::Up => (spec, clear),
        Direction::Down => (clear, spec),
    };
    let seed = args.seed.unwrap_or_else(crate::pinger::random_session);
    let mut relay = Relay::bind(RelayConfig {
        listen: args.listen,
        forward: args.forward,
        upstream,
        downstream,
        seed,
    })?;
    let s = relay.summary();
    let banner = format!(
        "sonde impair: listening on {}, forwarding to {}; up: {}; down: {}; seed {seed}\n",
        s.listen, s.forward, s.upstream_spec, s.downstream_spec
    );
    let quiet = args.quiet || args.json;
    serve(
        &mut relay,
        (!quiet).then_some(banner),
        args.json,
        Relay::summary,
        report::relay_text,
    )
}

fn header(flows: &[Flow], loopback: bool) -> String {
    let pinger = &flows[0].pinger;
    let cfg = pinger.config();
    let pace = match cfg.pace {
        Pace::Rate(rate) => format!(
            "rate {rate}/s (open loop, up to {} in flight)",
            pinger.inflight_max()
        ),
        Pace::Window => format!("closed loop, window {}", pinger.inflight_max()),
    };
    let end = match (cfg.count, cfg.duration) {
        (Some(n), _) => format!(", {n} probes"),
        (None, Some(d)) => format!(", for {}", humantime::format_duration(d)),
        (None, None) => ", until Ctrl-C".into(),
    };
    let (more, each) = match flows.len() {
        1 => (String::new(), ""),
        2 => (" and 1 more flow".to_string(), " per flow"),
        n => (format!(" and {} more flows", n - 1), " per flow"),
    };
    format!(
        "SONDE {}{} from {}{more}: {}-byte probes, {pace}{each}, timeout {}{end}, session {:016x}\n",
        cfg.target,
        if loopback { " (in-process echo)" } else { "" },
        pinger.local_addr(),
        cfg.size,
        humantime::format_duration(cfg.timeout),
        pinger.session()
    )
}
