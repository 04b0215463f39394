//! `sonde echo`: arguments to an echo config (the guard's limits defaulting by exposure), one
//! socket and pinned loop per thread, stats lines while it runs, the total at the end.

use super::args::{EchoArgs, GuardArgs, LimitArg, StampClock, Timestamps, When, WireArg};
use super::loop_for_thread;
use crate::config::{DscpReply, EchoConfig, Limit, Policy};
use crate::engine::threads;
use crate::error::Error;
use crate::model::aggregate::merge_echoes;
use crate::model::EchoSummary;
use crate::output::metrics::{self, Exposition};
use crate::output::{out, report};
use crate::roles::Echo;
use crate::wire::auth::Key;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

/// Default limits of a reflector reachable from the network (`sonde echo` bound to anything but
/// loopback), in datagrams per second.
const DEFAULT_LIMIT_PER_SOURCE: f64 = 10_000.0;
const DEFAULT_LIMIT_TOTAL: f64 = 100_000.0;

/// A thread's periodic report (`Some((index, counters))`), or its end (`None`).
type StatsMessage = (usize, Option<(u64, EchoSummary)>);
/// A thread's counters when it ended, and how it ended.
type ThreadEnd = (EchoSummary, Result<(), Error>);

/// `sonde echo`: serves until Ctrl-C or SIGTERM, then prints the counters of every thread.
pub(super) fn run(args: EchoArgs) -> Result<(), Error> {
    let threads = usize::from(args.threads);
    let exposed = !args.bind.ip().is_loopback();
    let cfg = config(&args, threads, exposed)?;
    let (tx, rx) = channel::<StatsMessage>();
    let mut echoes = bind(cfg, threads)?;
    let exposition = args
        .metrics
        .map(|addr| metrics::start(addr, metrics::default_buckets()))
        .transpose()?;
    // The metrics are the counters as of the last stats report: every second unless sooner.
    let period = match (args.stats_interval, &exposition) {
        (Some(asked), Some(_)) => Some(asked.min(Duration::from_secs(1))),
        (asked, None) => asked,
        (None, Some(_)) => Some(Duration::from_secs(1)),
    };
    if let Some(period) = period {
        report_stats(&mut echoes, period, &tx);
    }
    let mut banner = banner(&echoes[0], &args, threads, exposed);
    if let Some((exposition, line)) = &exposition {
        banner += line;
        for (i, echo) in echoes.iter().enumerate() {
            exposition.set_echo(i, echo.summary());
        }
    }
    let exposition = exposition.map(|(e, _)| e);
    // A line every --stats-interval: every so many reports when the metrics want them sooner.
    let every = match (args.stats_interval, period) {
        (Some(asked), Some(p)) => (asked.as_secs_f64() / p.as_secs_f64()).round().max(1.0) as u64,
        _ => 1,
    };
    let stats = Stats {
        lines: args.stats_interval.map(|_| every),
        json: args.json,
        metrics: exposition.clone(),
    };
    let parts = serve(echoes, &args, banner, (rx, tx), stats)?;
    if let Some(exposition) = &exposition {
        for (i, (summary, _)) in parts.iter().enumerate() {
            exposition.set_echo(i, summary.clone());
        }
        metrics::finish(exposition);
    }
    let total = merge_echoes(&parts.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
    out(&if args.json {
        report::json(&total) + "\n"
    } else {
        report::echo_text(&total)
    });
    parts.into_iter().try_for_each(|(_, r)| r)
}

/// The echo config the flags ask for. Reachable from the network, the rate limits are on unless
/// lifted; on loopback only this host's own processes can reach it, and the machine is
/// measuring itself.
impl GuardArgs {
    /// The policy the flags ask for (no key), spread over `threads` sockets. Reachable from the
    /// network (`exposed`), the rate limits are on unless lifted.
    pub(super) fn policy(&self, exposed: bool, threads: usize) -> Policy {
        let limit = |asked: Option<LimitArg>, default: f64| match asked {
            Some(LimitArg(limit)) => limit,
            None => exposed.then_some(default),
        };
        let per_source = limit(self.limit_per_source, DEFAULT_LIMIT_PER_SOURCE);
        // SO_REUSEPORT keeps a source address on one thread; the total is shared out.
        let total = limit(self.limit_total, DEFAULT_LIMIT_TOTAL).map(|t| t / threads as f64);
        Policy {
            allow: self.allow.clone(),
            per_source: per_source.map(Limit::per_second),
            total: total.map(Limit::per_second),
            key: None,
        }
    }
}

fn config(args: &EchoArgs, threads: usize, exposed: bool) -> Result<EchoConfig, Error> {
    let key = args
        .key_file
        .as_deref()
        .map(|path| Key::load(path, args.insecure_key_file))
        .transpose()?;
    // A reflector answers in each sender's own timestamp format: the clock flag is the pinger's.
    let wire = args
        .socket
        .wire
        .with_stamp(StampClock::Ntp, Default::default());
    if key.is_some() && !wire.can_sign() {
        return Err(Error::config(
            "--key-file",
            "authentication needs sonde's or STAMP's probe format (not --wire sockperf or text)",
        ));
    }
    if args.socket.connect {
        return Err(Error::config(
            "--connect",
            "is for a pinger (ping, loopback): an echo answers many peers",
        ));
    }
    if args.socket.timestamps == Timestamps::Hardware {
        return Err(Error::config(
            "--timestamps",
            "hardware: sonde does not read hardware times yet (a STAMP reflector takes T2 from \
             the kernel's receive stamp)",
        ));
    }
    if args.stateful && args.socket.wire != WireArg::Stamp {
        return Err(Error::config(
            "--stateful",
            "is for a STAMP reflector (--wire stamp)",
        ));
    }
    Ok(EchoConfig {
        bind: args.bind,
        buffers: args.socket.buffers(),
        reuse_port: threads > 1,
        wire,
        policy: Policy {
            key,
            ..args.guard.policy(exposed, threads)
        },
        // An echo replies to coalesced datagrams together, unless it spins for the lowest
        // latency (see --gro's help).
        gro: match args.socket.gro {
            When::Auto => !args.socket.busy_poll,
            when => when == When::On,
        },
        stateful: args.stateful,
        report_tos: args.report_tos,
        dscp_reply: args.dscp_reply,
    })
}

/// One echo socket per thread; the others share the address the first one got (its real port
/// when 0 was asked for).
fn bind(mut cfg: EchoConfig, threads: usize) -> Result<Vec<Echo>, Error> {
    let first = Echo::with_config(&cfg)?;
    cfg.bind = first.local_addr();
    let mut echoes = vec![first];
    for _ in 1..threads {
        echoes.push(Echo::with_config(&cfg)?);
    }
    Ok(echoes)
}

fn report_stats(echoes: &mut [Echo], period: std::time::Duration, tx: &Sender<StatsMessage>) {
    for (i, echo) in echoes.iter_mut().enumerate() {
        let tx = tx.clone();
        echo.report_stats(period, move |index, summary| {
            let _ = tx.send((i, Some((index, summary))));
        });
    }
}

/// Runs each echo on its own pinned loop until a stop; prints the banner and the stats lines
/// meanwhile. Returns each thread's counters and outcome. One echo with nothing to follow while
/// it runs (no stats lines, no metrics) runs on this thread: a process of one thread answers
/// faster (see `threads::run_here`).
fn serve(
    echoes: Vec<Echo>,
    args: &EchoArgs,
    banner: String,
    (rx, tx): (Receiver<StatsMessage>, Sender<StatsMessage>),
    stats: Stats,
) -> Result<Vec<ThreadEnd>, Error> {
    let threads = echoes.len();
    let placement = threads::placement(threads, args.cpus.as_ref().map(|c| c.0.as_slice()))?;
    let busy_poll = args.socket.busy_poll;
    let (quiet, json) = (args.quiet, args.json);
    let announce = || match (quiet, json) {
        (true, _) => {}
        (false, false) => out(&banner),
        // With --json stdout holds only JSON: the banner goes to stderr.
        (false, true) => eprint!("{banner}"),
    };
    // `alone`: the loop runs on the process's only thread (`Engine::alone_in_process`).
    let work = |(i, mut echo, alone): (usize, Echo, bool), arrived: &dyn Fn()| {
        // Sent even if this thread fails: the stats printer waits for every thread.
        let _finished = OnDrop(|| {
            let _ = tx.send((i, None));
        });
        let engine = loop_for_thread(busy_poll).map(|mut e| {
            if alone {
                e.alone_in_process();
            }
            e
        });
        arrived();
        let result = engine.and_then(|mut e| e.run(&mut [&mut echo]).map(|_| ()));
        (echo.summary(), result)
    };
    let followed = stats.lines.is_some() || stats.metrics.is_some();
    if threads == 1 && !followed {
        let echo = echoes.into_iter().next().expect("one echo");
        return Ok(vec![threads::run_here(
            (0, echo, true),
            placement[0],
            announce,
            work,
        )]);
    }
    Ok(threads::run_pinned(
        echoes
            .into_iter()
            .enumerate()
            .map(|(i, e)| (i, e, false))
            .collect(),
        &placement,
        || {
            announce();
            follow_stats(rx, threads, stats);
        },
        work,
    ))
}

/// Runs a closure when dropped (on unwinding too).
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

fn banner(echo: &Echo, args: &EchoArgs, threads: usize, exposed: bool) -> String {
    let bind = echo.local_addr();
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
    let mode = match (args.socket.wire, args.stateful) {
        (WireArg::Stamp, true) => "; STAMP test packets, stateful (a count per session)",
        (WireArg::Stamp, false) => "; STAMP test packets, stateless",
        (WireArg::Sonde | WireArg::Text | WireArg::Sockperf, _) => "",
    };
    let dscp = match args.dscp_reply {
        Some(DscpReply::Keep) => "; answering with each request's DSCP".to_string(),
        Some(DscpReply::Fixed(d)) => format!("; answering with DSCP {d}"),
        None => String::new(),
    };
    banner += &format!(
        "sonde echo: {}answering {sources}; per source {}, in all {}{}{mode}{dscp}\n",
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
/// What the threads' stats reports feed: lines on stdout (`--stats-interval`: one every so many
/// reports), the metrics.
struct Stats {
    lines: Option<u64>,
    json: bool,
    metrics: Option<Exposition>,
}

fn follow_stats(rx: Receiver<StatsMessage>, threads: usize, stats: Stats) {
    let mut running = vec![true; threads];
    let mut pending: std::collections::BTreeMap<u64, Vec<EchoSummary>> = Default::default();
    let json = stats.json;
    while running.iter().any(|&r| r) {
        let Ok((thread, message)) = rx.recv() else {
            return;
        };
        match message {
            Some((index, summary)) => {
                if let Some(exposition) = &stats.metrics {
                    exposition.set_echo(thread, summary.clone());
                }
                if stats.lines.is_some_and(|every| (index + 1) % every == 0) {
                    pending.entry(index).or_default().push(summary);
                }
            }
            None => running[thread] = false,
        }
        let live = running.iter().filter(|&&r| r).count();
        while let Some(entry) = pending.first_entry() {
            if entry.get().len() < live.max(1) && live > 0 {
                break;
            }
            let total = merge_echoes(&entry.remove());
            out(&if json {
                report::json_event("stats", &total) + "\n"
            } else {
                report::echo_stats_line(&total) + "\n"
            });
        }
    }
}
