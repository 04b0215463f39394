//! `sonde ping` and `sonde loopback`: flows built from the arguments, then one measurement —
//! open the outputs, wire them to the flows, run the flows on pinned loops while following them,
//! and finish (summary, exports, plot, thresholds).

use super::args::{Format, LoopbackArgs, PingArgs, ProbeArgs, WireArg};
use super::loop_for_thread;
use super::reload;
use super::targets::{self, Entry, Names};
use crate::config::{Pace, PingConfig};
use crate::engine::threads;
use crate::error::{Error, FileOp};
use crate::model::aggregate::{combine_pings, merge_echoes, merge_latencies};
use crate::model::{EchoSummary, IntervalSummary, Latency, PingSummary, ProbeEvent};
use crate::output::export::{self, csv, hgrm, hlog};
use crate::output::follow::{self, FinishGuard, Length, Message, Outputs, Progress};
use crate::output::metrics::{self, Exposition};
use crate::output::threshold::EXIT_CROSSED;
use crate::output::{out, out_json, plot, report};
use crate::roles::{Echo, Pinger};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// One pinger, with the in-process echo it measures in `sonde loopback`.
struct Flow {
    pinger: Pinger<'static>,
    echo: Option<Echo>,
}

/// `sonde ping`: the targets on one pinger, or spread over `--flows` pingers (one target on
/// `--flows` independent pingers).
pub(super) fn ping(args: PingArgs) -> Result<i32, Error> {
    let entries = target_entries(&args)?;
    let addrs: Vec<SocketAddr> = entries.iter().map(|e| e.target.addr).collect();
    let mut cfg = args
        .probe
        .keyed_config(addrs[0], false, args.probe.key()?)?;
    cfg.bind = args.bind;
    cfg.validate()?;
    if args.pmtu {
        if addrs.len() > 1 {
            return Err(Error::config(
                "--pmtu",
                "finds the path MTU of one target at a time",
            ));
        }
        return path_mtu(&args, cfg);
    }
    let flows = spread(&cfg, &addrs, args.probe.flows.map_or(1, usize::from))?
        .into_iter()
        .map(|cfg| {
            Ok(Flow {
                pinger: Pinger::new(cfg)?,
                echo: None,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    // A run without a count can change its targets (SIGHUP, --reload).
    let reload = args
        .targets_file
        .clone()
        .filter(|_| args.probe.count.is_none())
        .map(|path| reload::Source {
            path,
            cli: args.targets.clone(),
            stamp: args.probe.socket.wire == WireArg::Stamp,
            watch: args.reload,
            both_families: addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4()),
        });
    measure(&args.probe, flows, &entries, reload)
}

/// The targets of the command line, then of `--targets FILE`, each with a port.
fn target_entries(args: &PingArgs) -> Result<Vec<Entry>, Error> {
    let stamp = args.probe.socket.wire == WireArg::Stamp;
    targets::entries(&args.targets, args.targets_file.as_deref(), stamp)
}

/// The pingers' configurations: one target on `flows` pingers, or several targets dealt
/// round-robin over up to `flows` pingers (each pinned to its own core).
fn spread(cfg: &PingConfig, addrs: &[SocketAddr], flows: usize) -> Result<Vec<PingConfig>, Error> {
    if addrs.len() == 1 {
        return Ok(vec![cfg.clone(); flows]);
    }
    let n = flows.min(addrs.len());
    // Each pinger of a run that mixes families serves both: a reload may hand it either.
    let both = addrs.iter().any(|a| a.is_ipv4() != addrs[0].is_ipv4());
    (0..n)
        .map(|i| {
            let mut mine = addrs.iter().skip(i).step_by(n).copied();
            let mut flow = cfg.clone();
            flow.target = mine.next().expect("a target per flow");
            flow.also = mine.collect();
            flow.dual_stack = both;
            flow.validate()?;
            Ok(flow)
        })
        .collect()
}

/// `sonde ping --pmtu`: the sizes tried as they are known, then the path MTU.
fn path_mtu(args: &PingArgs, cfg: PingConfig) -> Result<i32, Error> {
    use crate::output::pmtu;
    let text = args.probe.format() == Format::Text;
    let timeout_ms = cfg.timeout.as_secs_f64() * 1e3;
    if text && !args.probe.quiet {
        out(&pmtu::heading(
            &cfg.target.to_string(),
            args.pmtu_probes,
            timeout_ms,
        ));
    }
    let target = cfg.target;
    let report = crate::run::path_mtu(cfg, args.pmtu_probes, |step| {
        if text && !args.probe.quiet {
            out(&pmtu::step_line(step));
        }
    })?;
    if report.largest_size_bytes.is_none() {
        let nothing = std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "nothing came back, not even the smallest probe",
        );
        return Err(Error::io("find the path MTU to", target, nothing));
    }
    out(&if text {
        pmtu::text(&report)
    } else {
        report::json(&report)
    });
    Ok(0)
}

/// `sonde loopback`: an echo and a pinger per flow (one per core unless told), each pair on one
/// loop. The socket flags are the pinger's; the in-process echo keeps the defaults and speaks
/// the same wire format (and checks the same key).
pub(super) fn loopback(args: LoopbackArgs) -> Result<i32, Error> {
    let ip: SocketAddr = if args.ipv6 { "[::1]:0" } else { "127.0.0.1:0" }
        .parse()
        .expect("literal address");
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len().max(1));
    let n = args.probe.flows.map_or(cores, usize::from);
    let key = args.probe.key()?;
    let flows = (0..n)
        .map(|_| {
            let cfg = args.probe.keyed_config(ip, true, key.clone())?;
            let (echo, pinger) = crate::run::loopback_pair(cfg)?;
            Ok(Flow {
                pinger,
                echo: Some(echo),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    measure(&args.probe, flows, &[], None)
}

/// What a run prints and writes, decided once from the arguments.
struct Plan {
    format: Format,
    cfg: PingConfig,
    flows: usize,
    /// Targets over every flow (a flow may have several).
    targets: usize,
    /// Several targets, now or after a reload: lines and rows name their target.
    many: bool,
    /// Names and labels of targets from a file, by address.
    names: Names,
    loopback: bool,
    per_probe: bool,
    /// A progress bar on the terminal.
    progress: bool,
}

impl Plan {
    fn new(args: &ProbeArgs, flows: &[Flow], entries: &[Entry], reloads: bool) -> Self {
        let cfg = flows[0].pinger.config().clone();
        let targets = flows.iter().map(|f| f.pinger.targets().count()).sum();
        let many = targets > 1 || reloads;
        let per_probe = args.per_probe_lines(&cfg) && (flows.len() == 1 || args.verbose);
        Self {
            format: args.format(),
            flows: flows.len(),
            targets,
            many,
            names: Names::new(entries),
            loopback: flows[0].echo.is_some(),
            per_probe,
            progress: !args.quiet
                && !args.no_progress
                && !per_probe
                && std::io::IsTerminal::is_terminal(&std::io::stderr()),
            cfg,
        }
    }
}

/// Files written while the run goes; the others are written at the end.
struct Files {
    csvs: Vec<Arc<csv::SharedCsv>>,
    hlog: Option<hlog::Writer>,
    /// For the plot: when lost probes were sent (a bounded sample per flow).
    lost_marks: Vec<Arc<Mutex<Vec<u64>>>>,
}

/// The run: outputs opened, flows started and followed, then finished.
fn measure(
    args: &ProbeArgs,
    mut flows: Vec<Flow>,
    entries: &[Entry],
    reload: Option<reload::Source>,
) -> Result<i32, Error> {
    let plan = Plan::new(args, &flows, entries, reload.is_some());
    let files = open_files(args, &plan)?;
    observe(&mut flows, &plan, &files, args.plot.is_some());
    let (tx, rx) = mpsc::channel();
    let exposition = args
        .metrics
        .map(|addr| start_metrics(addr, args, &plan, &flows))
        .transpose()?;
    let progress = report_intervals(&mut flows, &plan, args, &tx);
    let outputs = Outputs {
        lines: args.interval.is_some() && plan.format == Format::Text && !args.quiet,
        jsonl: plan.format == Format::Jsonl,
        hlog: files.hlog,
        progress,
        metrics: exposition.clone().map(|e| (e, plan.cfg.target.to_string())),
        keep: args.plot.is_some(),
        each_turn: reload
            .map(|source| follow_targets(source, &mut flows, &plan, exposition.clone()))
            .transpose()?,
    };
    let (flows, outcomes, followed) = run_flows(flows, &plan, args, (tx, rx), outputs)?;
    if let Some(exposition) = &exposition {
        metrics::finish(exposition);
    }
    for csv in &files.csvs {
        csv.finish()
            .map_err(|e| Error::file("--export-csv", FileOp::Write, "the CSV export", e))?;
    }
    let run = Finished {
        flows,
        fault: outcomes.into_iter().find_map(Result::err),
        followed,
        lost_marks: files.lost_marks,
    };
    finish(args, &plan, run)
}

/// A run whose targets file can be re-read: each pinger takes new lists, and the following
/// loop looks for a reload on each turn.
fn follow_targets(
    source: reload::Source,
    flows: &mut [Flow],
    plan: &Plan,
    exposition: Option<Exposition>,
) -> Result<Box<dyn FnMut() + Send>, Error> {
    let mut channels = Vec::new();
    for flow in flows.iter_mut() {
        let (tx, rx) = mpsc::channel();
        flow.pinger.follow_targets(rx);
        channels.push((tx, flow.pinger.targets().collect()));
    }
    let mut reloader = reload::Reloader::new(source, channels, plan.names.clone(), exposition)?;
    Ok(Box::new(move || reloader.turn()))
}

/// `--metrics`: the endpoint up, the run's series at zero.
fn start_metrics(
    addr: SocketAddr,
    args: &ProbeArgs,
    plan: &Plan,
    flows: &[Flow],
) -> Result<Exposition, Error> {
    let buckets = args.metrics_buckets.clone().map(|b| b.0);
    let (exposition, line) =
        metrics::start(addr, buckets.unwrap_or_else(metrics::default_buckets))?;
    for target in flows.iter().flat_map(|f| f.pinger.targets()) {
        let labels = plan.names.entry(target).map(|e| e.metric_labels());
        exposition.add_target(&target.to_string(), &labels.unwrap_or_default());
    }
    if !args.quiet {
        eprint!("{line}");
    }
    Ok(exposition)
}

/// Every file is opened before any traffic: a bad path fails fast, with nothing lost. (The
/// summary's files are written at the end; creating them now proves they can be.)
fn open_files(args: &ProbeArgs, plan: &Plan) -> Result<Files, Error> {
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
        .map(|path| {
            let stamp = args.socket.wire == WireArg::Stamp;
            Ok(csv::SharedCsv::new(
                export::create("--export-csv", path)?,
                stamp,
                plan.many,
            ))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let hlog = match args.export_hlog.is_empty() {
        true => None,
        false => Some(hlog::Writer::create(
            &args.export_hlog,
            std::time::SystemTime::now(),
        )?),
    };
    Ok(Files {
        csvs,
        hlog,
        lost_marks: (0..plan.flows).map(|_| Arc::default()).collect(),
    })
}

/// Hands each flow's probe events to what wants them: per-probe lines, CSV rows, loss marks.
fn observe(flows: &mut [Flow], plan: &Plan, files: &Files, plot: bool) {
    if !(plan.per_probe || !files.csvs.is_empty() || plot) {
        return;
    }
    let n = plan.flows;
    let per_probe = plan.per_probe;
    for (i, flow) in flows.iter_mut().enumerate() {
        let marks = files.lost_marks[i].clone();
        let prefix = if n > 1 {
            format!("flow {i}: ")
        } else {
            String::new()
        };
        let many = plan.many;
        let names = plan.names.clone();
        let mut rows: Vec<_> = files
            .csvs
            .iter()
            .map(|c| csv::ProbeRows::new(i, many, c.clone()))
            .collect();
        flow.pinger.observe(move |target, event| {
            if per_probe {
                // Each line of several targets starts with the target's name.
                let name = match target.filter(|_| many) {
                    Some(addr) => format!("{}: ", names.display(addr)),
                    None => String::new(),
                };
                out(&format!("{prefix}{name}{}\n", report::probe_line(event)));
            }
            rows.iter_mut().for_each(|r| r.record(target, event));
            if let (true, ProbeEvent::Lost { sent_ns, .. }) = (plot, event) {
                let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
                if marks.len() < plot::MAX_LOSS_MARKS / n {
                    marks.push(*sent_ns);
                }
            }
        });
    }
}

/// Asks each flow for interval reports (when an output needs them) and, for a bar counting
/// probes, for its progress; returns the progress bar, if one shows.
fn report_intervals(
    flows: &mut [Flow],
    plan: &Plan,
    args: &ProbeArgs,
    tx: &Sender<Message>,
) -> Option<Progress> {
    let period = args.period(&plan.cfg);
    let mut counters = Vec::new();
    for (i, flow) in flows.iter_mut().enumerate() {
        if let Some(period) = period {
            let tx = tx.clone();
            flow.pinger.report_intervals(period, move |report| {
                let _ = tx.send(Message::Interval(i, Box::new(report)));
            });
        }
        // Only a bar counting probes needs the flows to count for it.
        if plan.progress && plan.cfg.count.is_some() {
            let counter = Arc::new(AtomicU64::new(0));
            flow.pinger.count_progress(counter.clone());
            counters.push(counter);
        }
    }
    let length = match (plan.cfg.count, plan.cfg.duration) {
        (Some(count), _) => Length::Probes(count * plan.targets as u64, counters),
        (None, Some(d)) => Length::Time(d),
        (None, None) => return None,
    };
    plan.progress
        .then(|| Progress::on_terminal(length))
        .flatten()
}

type FlowOutcomes = (
    Vec<Flow>,
    Vec<Result<(), Error>>,
    Result<Vec<IntervalSummary>, Error>,
);

/// Runs each flow on its own pinned loop while this thread follows them (banner, intervals,
/// progress); returns the flows, how each ended, and the intervals followed.
fn run_flows(
    flows: Vec<Flow>,
    plan: &Plan,
    args: &ProbeArgs,
    (tx, rx): (Sender<Message>, Receiver<Message>),
    outputs: Outputs,
) -> Result<FlowOutcomes, Error> {
    let banner = (!args.quiet && plan.format == Format::Text).then(|| header(&flows, plan));
    let placement = threads::placement(plan.flows, args.cpus.as_ref().map(|c| c.0.as_slice()))?;
    let busy_poll = args.socket.busy_poll;
    let mut followed = None;
    let results = threads::run_pinned(
        flows.into_iter().enumerate().collect(),
        &placement,
        || {
            if let Some(banner) = banner {
                out(&banner);
            }
            followed = Some(follow::follow(rx, plan.flows, outputs));
        },
        |(i, mut flow): (usize, Flow), arrived| {
            let _finished = FinishGuard {
                flow: i,
                tx: tx.clone(),
            };
            let engine = loop_for_thread(busy_poll);
            arrived();
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
    let (flows, outcomes) = results.into_iter().unzip();
    Ok((flows, outcomes, followed.expect("the following thread ran")))
}

/// What the flows left when they ended.
struct Finished {
    flows: Vec<Flow>,
    /// A fault ends the run, but what was measured until then is still printed and written.
    fault: Option<Error>,
    followed: Result<Vec<IntervalSummary>, Error>,
    lost_marks: Vec<Arc<Mutex<Vec<u64>>>>,
}

/// Prints the summary, writes what is written at the end, and checks the thresholds: the exit
/// status.
fn finish(args: &ProbeArgs, plan: &Plan, run: Finished) -> Result<i32, Error> {
    let Finished {
        flows,
        fault,
        followed,
        lost_marks,
    } = run;
    let (summary, rtt, echo) = settle(flows, plan);
    if summary.counters.sent + summary.counters.not_sent == 0 {
        return fault.map_or(Ok(0), Err);
    }
    print_summary(&summary, echo.as_ref(), plan);
    export::write_json("--export-json", &args.export_json, &summary)?;
    if !args.export_hgrm.is_empty() {
        export::write_all(
            "--export-hgrm",
            &args.export_hgrm,
            &hgrm::render(&rtt.histogram()),
        )?;
    }
    if let Some(path) = &args.plot {
        let intervals = followed.as_deref().unwrap_or_default();
        draw(path, &summary, intervals, &lost_marks, &rtt)?;
    }
    if let Some(fault) = fault {
        return Err(fault);
    }
    followed?;
    let crossed = args.thresholds().crossed_by_target(&summary);
    for line in &crossed {
        eprintln!("sonde: threshold crossed: {line}");
    }
    Ok(if crossed.is_empty() { 0 } else { EXIT_CROSSED })
}

/// What the flows measured: the summary (its targets named), the round trips of them all, and
/// a loopback run's echo. The flows go here, so that ten thousand targets' state is not held
/// while their summaries are printed.
fn settle(flows: Vec<Flow>, plan: &Plan) -> (PingSummary, Latency, Option<EchoSummary>) {
    let distributions: Vec<_> = flows.iter().map(|f| f.pinger.distributions()).collect();
    let mut summary = combine_pings(
        flows
            .iter()
            .zip(&distributions)
            .map(|(f, d)| (f.pinger.summary(), d.as_ref()))
            .collect(),
    );
    for target in &mut summary.targets {
        if let Some(entry) = target.target.parse().ok().and_then(|a| plan.names.entry(a)) {
            target.name = entry.name.clone();
            target.labels = entry.labels.clone();
        }
    }
    let rtt = merge_latencies(distributions.iter().map(|d| &d.rtt));
    let echoes: Vec<_> = flows
        .iter()
        .filter_map(|f| f.echo.as_ref().map(Echo::summary))
        .collect();
    let echo = (!echoes.is_empty()).then(|| {
        let mut total = merge_echoes(&echoes);
        if echoes.len() > 1 {
            total.bind = format!("{} in-process sockets", echoes.len());
        }
        total
    });
    (summary, rtt, echo)
}

fn print_summary(summary: &PingSummary, echo: Option<&EchoSummary>, plan: &Plan) {
    match plan.format {
        Format::Json => out_json(summary),
        Format::Jsonl => out(&(report::json_event("summary", summary) + "\n")),
        Format::Text => {
            out(&report::ping_text(summary));
            if let Some(echo) = echo.filter(|_| plan.loopback) {
                out(&report::echo_text(echo));
            }
        }
    }
}

fn draw(
    path: &str,
    summary: &PingSummary,
    intervals: &[IntervalSummary],
    lost_marks: &[Arc<Mutex<Vec<u64>>>],
    rtt: &Latency,
) -> Result<(), Error> {
    let lost: Vec<u64> = lost_marks
        .iter()
        .flat_map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
        .collect();
    let run = plot::Run::live(summary, intervals, &lost, &rtt.histogram());
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
    plot::render("--plot", path, &title, &[run])
}

/// The line a run starts with: what is measured, how, and until when.
fn header(flows: &[Flow], plan: &Plan) -> String {
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
    let (what, each) = match plan.targets {
        1 => (cfg.target.to_string(), each),
        n => (
            format!("{n} targets ({}, ...)", plan.names.display(cfg.target)),
            " per target",
        ),
    };
    format!(
        "SONDE {what}{} from {}{more}: {}-byte probes, {pace}{each}, timeout {}{end}, session {:016x}\n",
        if plan.loopback {
            " (in-process echo)"
        } else {
            ""
        },
        pinger.local_addr(),
        cfg.size,
        humantime::format_duration(cfg.timeout),
        pinger.session()
    )
}
