//! The command line as clap sees it: every subcommand, flag and help text, and nothing else.
//! Fixed choices are `ValueEnum`s mapped once to the core types; values are checked by the
//! parsers in `parse.rs`, and turned into typed configs by each subcommand's file.

// The doc comments below are clap's help texts: `[::1]:9999` and `[default: ...]` are literal.
#![allow(rustdoc::broken_intra_doc_links)]

use super::parse::{
    parse_addr, parse_buckets, parse_cidr, parse_dscp, parse_dscp_reply, parse_duration,
    parse_gemodel, parse_interval, parse_limit, parse_link_rate, parse_metrics_addr, parse_percent,
    parse_rate, parse_size, parse_target, parse_tos,
};
use crate::config::{DscpReply, Gso, LossModel};
use crate::engine::threads::CpuList;
use crate::wire::stamp::{tlv, TimeFormat};
use crate::wire::{StampOptions, Wire};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::time::Duration;

/// High-rate UDP round-trip measurement: echo server, pipelined pinger, and both in one process.
#[derive(Debug, Parser)]
#[command(name = "sonde", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
pub(crate) struct MergeArgs {
    /// Interval logs written by --export-hlog (or any HdrHistogram V2 interval log); - for stdin
    #[arg(value_name = "LOG", required = true)]
    pub(crate) logs: Vec<String>,
    /// Write the merged distribution in .hgrm format to FILE; - for stdout [repeatable]
    #[arg(long, value_name = "FILE")]
    pub(crate) export_hgrm: Vec<String>,
    /// Print the merged summary as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PlotArgs {
    /// Files sonde wrote: --export-csv, --export-hlog, --json/--export-json, --format jsonl, .hgrm
    #[arg(value_name = "INPUT", required = true)]
    pub(crate) inputs: Vec<String>,
    /// The SVG to write; - for stdout
    #[arg(short, long, value_name = "FILE.svg")]
    pub(crate) output: String,
    /// Chart title
    #[arg(long, default_value = "sonde")]
    pub(crate) title: String,
    /// Legend names for the inputs, in order [default: the file names]
    #[arg(long, value_name = "NAME")]
    pub(crate) label: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ImpairArgs {
    /// Address clients send to
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) listen: SocketAddr,
    /// Server the datagrams are relayed to
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) forward: SocketAddr,
    /// Random (Bernoulli) loss, e.g. 5%
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub(crate) loss: Option<f64>,
    /// Gilbert-Elliott loss as netem writes it: gemodel:p[,r[,1-h[,1-k]]] in percent
    /// (defaults r = 100-p, 1-h = 100, 1-k = 0: mean burst length 100/r)
    #[arg(long, value_name = "MODEL", value_parser = parse_gemodel, conflicts_with = "loss")]
    pub(crate) loss_model: Option<LossModel>,
    /// Added delay (humantime: 5ms, 250us)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) delay: Option<Duration>,
    /// Uniform jitter around the delay: delay ± jitter
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "delay")]
    pub(crate) jitter: Option<Duration>,
    /// Share of datagrams sent without the delay, overtaking the others (netem's reorder)
    #[arg(long, value_name = "PCT", value_parser = parse_percent, requires = "delay")]
    pub(crate) reorder: Option<f64>,
    /// Share of datagrams sent twice
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub(crate) duplicate: Option<f64>,
    /// Link rate, tc units: 800kbit, 10mbit, 1gbit (bits/s) or 100kbps (bytes/s)
    #[arg(long, value_name = "RATE", value_parser = parse_link_rate)]
    pub(crate) rate: Option<f64>,
    /// Most datagrams held per direction; more are dropped
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub(crate) limit: usize,
    /// Which traffic to impair: both ways, up (client to server) or down (server to client)
    #[arg(long, value_enum, default_value_t = Direction::Both)]
    pub(crate) direction: Direction,
    /// Seed for every random decision: the same seed and traffic give the same run
    #[arg(long, value_name = "N")]
    pub(crate) seed: Option<u64>,
    /// Most clients relayed at once, each with its own socket toward the server and its own
    /// impairment state; datagrams from more are dropped and counted
    #[arg(long, value_name = "N", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub(crate) max_clients: u32,
    /// Forget a client not heard from for this long (its socket closed, its counts kept)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub(crate) client_idle: Duration,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
    /// Print the counters on exit as one JSON object
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing but the counters on exit
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Direction {
    Both,
    Up,
    Down,
}

/// Who a service answers (or relays), and how much: the echo's and the relay's guard.
#[derive(Debug, Args)]
pub(crate) struct GuardArgs {
    /// Answer only sources in this network (e.g. 198.18.0.0/15, ::1, 127.0.0.1) [repeatable;
    /// default: every source]
    #[arg(long, value_name = "CIDR", value_parser = parse_cidr)]
    pub(crate) allow: Vec<ipnet::IpNet>,
    /// Datagrams per second answered per source IP, or off [default: off on a loopback address,
    /// 10000 otherwise]
    #[arg(long, value_name = "PPS|off", value_parser = parse_limit, allow_negative_numbers = true)]
    pub(crate) limit_per_source: Option<LimitArg>,
    /// Datagrams per second answered in all, or off [default: off on a loopback address, 100000
    /// otherwise]
    #[arg(long, value_name = "PPS|off", value_parser = parse_limit, allow_negative_numbers = true)]
    pub(crate) limit_total: Option<LimitArg>,
}

#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// Address to listen on; a wildcard (0.0.0.0:PORT, [::]:PORT) must be asked for explicitly
    #[arg(short, long, value_name = "ADDR", default_value = "127.0.0.1:9999", value_parser = parse_addr)]
    pub(crate) bind: SocketAddr,
    /// Print the counters on exit as one JSON object (the banner goes to stderr)
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing but the counters on exit
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Echo threads: one SO_REUSEPORT socket and one poll loop each, pinned to a core
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) threads: u16,
    /// Cores to pin threads to, in turn (e.g. 0,1 or 2-5) [default: every core in turn]
    #[arg(long, value_name = "LIST", value_parser = crate::engine::threads::parse_cpus)]
    pub(crate) cpus: Option<CpuList>,
    #[command(flatten)]
    pub(crate) guard: GuardArgs,
    /// Answer only probes signed with the key in FILE (sonde ping --key-file with the same file);
    /// the file must be readable by its owner only
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<String>,
    /// Accept a --key-file that group or others can read or write
    #[arg(long, requires = "key_file")]
    pub(crate) insecure_key_file: bool,
    /// Print the counters (echoed, refused by reason) every DURATION, as well as at the end
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) stats_interval: Option<Duration>,
    /// Serve OpenMetrics for Prometheus at http://ADDR/metrics (PORT alone: on 127.0.0.1)
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub(crate) metrics: Option<SocketAddr>,
    /// With --wire stamp: count each session's test packets (RFC 8762 stateful reflector), so
    /// that senders can tell forward from backward loss [default: stateless]
    #[arg(long)]
    pub(crate) stateful: bool,
    /// Count the DSCP and ECN each datagram arrived with, per class, in the summary and stats
    /// lines (a control message per receive: a few percent of capacity)
    #[arg(long)]
    pub(crate) report_tos: bool,
    /// Answer with this DSCP: keep (each request's own; ECN not-ECT), or a name (ef, af11..,
    /// cs0..cs7) or 0-63 on every answer; keep implies --report-tos
    #[arg(long, value_name = "keep|DSCP", value_parser = parse_dscp_reply)]
    pub(crate) dscp_reply: Option<DscpReply>,
    #[command(flatten)]
    pub(crate) socket: SocketArgs,
}

/// Socket and loop options shared by every role that measures or serves.
#[derive(Debug, Args)]
pub(crate) struct SocketArgs {
    /// Receive buffer to ask the kernel for (bytes; K, M suffixes); the summary says what it granted
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) rcvbuf: Option<usize>,
    /// Send buffer to ask the kernel for (bytes; K, M suffixes)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) sndbuf: Option<usize>,
    /// Never sleep: spin on non-blocking polls for the lowest, steadiest latency (costs a core)
    #[arg(long)]
    pub(crate) busy_poll: bool,
    /// (ping, loopback) Connect the pinger's socket to the target: the kernel keeps the route
    /// instead of looking it up per send, but drops datagrams from anywhere else, so they are
    /// no longer seen or counted as foreign
    #[arg(long)]
    pub(crate) connect: bool,
    /// Probe format: sonde's own, text (sonde's as printable ASCII, for servers that read text;
    /// an echo answers it as sonde's), sockperf's (to measure, or serve, sockperf's peer), or
    /// STAMP test packets (RFC 8762: to measure, or serve, standard reflectors and senders)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = WireArg::Sonde)]
    pub(crate) wire: WireArg,
    /// Where send and receive times come from: the kernel (a probe's time as it enters the
    /// device's queue, a reply's as it arrives: sonde's own work at either end is not in the
    /// round trip) or user space (a clock read before the send call and after the receive call
    /// returns, as most tools measure). Send times stay user space's in a closed loop of several
    /// in flight, where the kernel's stamp per probe costs more of the rate than it takes off
    /// round trips that queue in the window. hardware: the network card's stamps, where it has
    /// them (checked, and refused with the reason: sonde does not read them yet)
    #[arg(long, value_name = "SOURCE", value_enum, default_value_t = Timestamps::Kernel)]
    pub(crate) timestamps: Timestamps,
    /// Pinger: send a run of probes as one buffer the kernel cuts up (UDP GSO): one trip
    /// through the stack for the run. auto: toward loopback only (on a real path a qdisc or
    /// firewall would see, and drop or delay, the run as one packet)
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = When::Auto)]
    pub(crate) gso: When,
    /// Take datagrams a GSO sender sent together in one buffer (UDP GRO). auto: on for an echo
    /// (it replies to them together) unless it busy-polls (a socket taking coalesced datagrams
    /// answered one in flight about 0.3 µs later here); off for a pinger, where a coalesced
    /// buffer dropped for want of room would count once in local_drops, however many replies it
    /// held
    #[arg(long, value_name = "WHEN", value_enum, default_value_t = When::Auto)]
    pub(crate) gro: When,
}

#[derive(Debug, Args)]
pub(crate) struct PingArgs {
    /// Echo servers to measure, HOST:PORT (e.g. 127.0.0.1:9999, [::1]:9999, localhost:9999);
    /// with --wire stamp the port may be left out (862). Several targets share one socket and
    /// loop, each with its own sequence numbers, figures and line in the summary
    #[arg(value_name = "HOST:PORT", value_parser = parse_target,
          required_unless_present = "targets_file")]
    pub(crate) targets: Vec<Target>,
    /// Read more targets from FILE: one HOST:PORT a line, then optional labels (name=web1
    /// site=ams); # starts a comment
    #[arg(long = "targets", value_name = "FILE")]
    pub(crate) targets_file: Option<String>,
    /// Re-read --targets FILE whenever it changes (SIGHUP re-reads it in any run without
    /// --count): new targets start, removed ones stop and leave the metrics
    #[arg(long, requires = "targets_file", conflicts_with = "count")]
    pub(crate) reload: bool,
    /// Local address to send from
    #[arg(short, long, value_name = "ADDR", value_parser = parse_addr)]
    pub(crate) bind: Option<SocketAddr>,
    /// Find the path MTU: the largest --size that comes back with don't-fragment set (the
    /// kernel's MTU first, then a bisection, --pmtu-probes a size; each size waits --timeout)
    #[arg(long, conflicts_with_all = ["count", "duration", "size", "rate", "inflight", "flows",
                                      "targets_file"])]
    pub(crate) pmtu: bool,
    /// With --pmtu: probes sent at each size (one reply is enough)
    #[arg(long, value_name = "N", requires = "pmtu", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..=100))]
    pub(crate) pmtu_probes: u64,
    #[command(flatten)]
    pub(crate) probe: ProbeArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LoopbackArgs {
    /// Use ::1 instead of 127.0.0.1
    #[arg(short = '6', long)]
    pub(crate) ipv6: bool,
    #[command(flatten)]
    pub(crate) probe: ProbeArgs,
}

/// Probe options shared by `ping` and `loopback`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Datagram size in bytes, the probe header included (sonde's: 32 bytes) [default: 64, or
    /// the header where it is longer: 112 for authenticated STAMP]
    #[arg(short, long, value_name = "BYTES", allow_negative_numbers = true)]
    pub(crate) size: Option<usize>,
    /// Stop after N probes
    #[arg(
        short,
        long,
        value_name = "N",
        conflicts_with = "duration",
        allow_negative_numbers = true
    )]
    pub(crate) count: Option<u64>,
    /// Stop sending after this long (humantime: 10s, 1m30s, 500ms)
    #[arg(short, long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// Open-loop fixed rate, probes per second [ping default: 1; with --inflight alone: closed loop]
    #[arg(short, long, value_name = "PPS", value_parser = parse_rate, allow_negative_numbers = true)]
    pub(crate) rate: Option<f64>,
    /// Most probes in flight; without --rate, a closed-loop window sending as fast as replies come
    #[arg(short = 'w', long, value_name = "N", allow_negative_numbers = true)]
    pub(crate) inflight: Option<usize>,
    /// Per-probe timeout: no reply by then counts as lost, a reply after it as late
    #[arg(short, long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub(crate) timeout: Duration,
    /// One line per probe, whatever the rate
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Only the final summary (no per-probe or interval lines, no progress bar)
    #[arg(short, long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// Print the summary as one JSON object on stdout (and nothing else there): --format json
    #[arg(long, conflicts_with = "format")]
    pub(crate) json: bool,
    /// What stdout gets: text, json (the summary as one object) or jsonl (one object per
    /// interval, then the summary: {"event": "interval"|"summary", "data": ...})
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) format: Option<Format>,
    /// Report every interval: one line (or JSON object) with its sent, received, loss, p50, p99
    /// and max [jsonl, hlog: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_interval)]
    pub(crate) interval: Option<Duration>,
    /// Write the summary as JSON (the schema of --json) to FILE; - for stdout [repeatable]
    #[arg(long, value_name = "FILE")]
    pub(crate) export_json: Vec<String>,
    /// Stream one CSV row per probe to FILE: flow, seq, scheduled and actual send, RTT, status
    #[arg(long, value_name = "FILE")]
    pub(crate) export_csv: Vec<String>,
    /// Write the RTT percentile distribution in HdrHistogram's .hgrm text format to FILE
    #[arg(long, value_name = "FILE")]
    pub(crate) export_hgrm: Vec<String>,
    /// Write an HdrHistogram interval log (compressed V2, one histogram per interval) to FILE
    #[arg(long, value_name = "FILE")]
    pub(crate) export_hlog: Vec<String>,
    /// Draw RTT over time (losses and outages marked) and the percentile distribution to an SVG
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<String>,
    /// Exit with status 3 if the loss is above PCT (e.g. 0.1%)
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    pub(crate) fail_loss: Option<f64>,
    /// Exit with status 3 if the median RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) fail_p50: Option<Duration>,
    /// Exit with status 3 if the 99th percentile RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) fail_p99: Option<Duration>,
    /// Exit with status 3 if the 99.9th percentile RTT is above DURATION (or nothing was received)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) fail_p999: Option<Duration>,
    /// No progress bar (there is none anyway unless stderr is a terminal)
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Serve OpenMetrics for Prometheus at http://ADDR/metrics (PORT alone: on 127.0.0.1),
    /// updated every --interval (1s by default)
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub(crate) metrics: Option<SocketAddr>,
    /// With --metrics: the RTT and delay histograms' bucket bounds, comma-separated durations
    /// [default: 1-2-5 steps from 1us to 10s]
    #[arg(long, value_name = "LIST", value_parser = parse_buckets, requires = "metrics")]
    pub(crate) metrics_buckets: Option<Buckets>,
    /// Sign probes with the key in FILE and accept only signed replies (the echo needs the same
    /// --key-file); at least 16 bytes, one trailing newline ignored, readable by its owner only
    #[arg(long, value_name = "FILE")]
    pub(crate) key_file: Option<String>,
    /// Accept a --key-file that group or others can read or write
    #[arg(long, requires = "key_file")]
    pub(crate) insecure_key_file: bool,
    /// With --wire stamp: timestamps in NTP's 64-bit format or PTPv2's truncated one (the Z bit)
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = StampClock::Ntp)]
    pub(crate) stamp_clock: StampClock,
    /// With --wire stamp: RFC 8972 TLVs in each test packet (comma-separated): padding (as an
    /// Extra Padding TLV), timestamp-info, cos (Class of Service: the --dscp/--ecn sent, as the
    /// reflector received them), direct (Direct Measurement counters); with --key-file an HMAC TLV
    #[arg(long, value_name = "LIST", value_enum, value_delimiter = ',')]
    pub(crate) stamp_tlv: Vec<StampTlv>,
    /// Send probes with this DSCP: a name (ef, va, le, cs0..cs7, af11..af43) or 0-63
    #[arg(long, value_name = "DSCP", value_parser = parse_dscp)]
    pub(crate) dscp: Option<u8>,
    /// Send probes with this ECN codepoint
    #[arg(long, value_name = "ECN", value_enum)]
    pub(crate) ecn: Option<EcnArg>,
    /// Send probes with this whole TOS byte (IPv6: traffic class), 0-255 or 0x00-0xff: DSCP in
    /// the top six bits, ECN in the low two
    #[arg(long, value_name = "N", value_parser = parse_tos, conflicts_with_all = ["dscp", "ecn"])]
    pub(crate) tos: Option<u8>,
    /// Set don't-fragment (IPv4 DF, IPv6 IPV6_DONTFRAG): a probe too big for the path is not
    /// sent, and the summary says the MTU the kernel reported
    #[arg(long)]
    pub(crate) df: bool,
    /// Send probes with this TTL (IPv6: hop limit), 1-255
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=255))]
    pub(crate) ttl: Option<u8>,
    /// Send and receive through this interface only (SO_BINDTODEVICE; a VRF device works the
    /// same)
    #[arg(long, value_name = "IFACE")]
    pub(crate) interface: Option<String>,
    /// Independent flows, each with its own socket, port and poll loop, pinned to a core; --rate,
    /// --count and --inflight apply to each [ping: 1; loopback: one per core]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) flows: Option<u16>,
    /// Cores to pin flows to, in turn (e.g. 0,1 or 2-5) [default: every core in turn]
    #[arg(long, value_name = "LIST", value_parser = crate::engine::threads::parse_cpus)]
    pub(crate) cpus: Option<CpuList>,
    #[command(flatten)]
    pub(crate) socket: SocketArgs,
}

/// `--metrics-buckets`: histogram bounds, seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Buckets(pub(crate) Vec<f64>);

/// What stdout gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Json,
    Jsonl,
}

/// `--wire`: the probe format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WireArg {
    Sonde,
    /// sonde's header as printable ASCII, ASCII padding: for servers that read text
    Text,
    Sockperf,
    Stamp,
}

impl WireArg {
    /// The core type, STAMP's timestamps in `clock`'s format and with `tlvs`.
    pub(crate) fn with_stamp(self, clock: StampClock, tlvs: tlv::Request) -> Wire {
        match self {
            WireArg::Sonde => Wire::Sonde,
            WireArg::Text => Wire::Text,
            WireArg::Sockperf => Wire::Sockperf,
            WireArg::Stamp => Wire::Stamp(StampOptions {
                format: match clock {
                    StampClock::Ntp => TimeFormat::Ntp,
                    StampClock::Ptp => TimeFormat::Ptp,
                },
                tlvs,
            }),
        }
    }
}

/// `--stamp-tlv`: one RFC 8972 TLV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StampTlv {
    Padding,
    TimestampInfo,
    Cos,
    Direct,
}

/// `--ecn`: an ECN codepoint (RFC 3168).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum EcnArg {
    NotEct,
    Ect1,
    Ect0,
    Ce,
}

impl EcnArg {
    pub(crate) fn bits(self) -> u8 {
        match self {
            EcnArg::NotEct => 0,
            EcnArg::Ect1 => 1,
            EcnArg::Ect0 => 2,
            EcnArg::Ce => 3,
        }
    }
}

/// `--stamp-clock`: STAMP's timestamp format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StampClock {
    Ntp,
    Ptp,
}

/// A ping target as given: an address, and whether the port was given with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) port: bool,
}

/// `--timestamps`: where send and receive times come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Timestamps {
    Kernel,
    User,
    /// The network card's own stamps: refused with the reason (none on the interface, or not
    /// read by sonde yet).
    Hardware,
}

/// `--gso`, `--gro`: when an offload is used; `auto` means what each role's help says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum When {
    Auto,
    On,
    Off,
}

impl From<When> for Gso {
    fn from(when: When) -> Self {
        match when {
            When::Auto => Gso::Auto,
            When::On => Gso::On,
            When::Off => Gso::Off,
        }
    }
}

/// A rate limit as given: datagrams per second, or `None` for off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LimitArg(pub(crate) Option<f64>);
