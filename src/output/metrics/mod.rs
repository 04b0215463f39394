//! `--metrics ADDR`: OpenMetrics (and Prometheus text) for Prometheus to scrape, so that many
//! runs on many hosts are aggregated by Prometheus rather than by a collector of our own.
//!
//! The measurement loops never touch this: the thread that follows a run adds each combined
//! interval to an [`Exposition`] (an echo's thread sets its counters), and the HTTP thread
//! ([`http`]) encodes a scrape from it with `prometheus-client`. A slow or hostile scraper only
//! costs the HTTP thread.

pub(crate) mod http;

use crate::error::Error;
use crate::model::{Counters, EchoSummary, IntervalReport, Latency};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a removed target's late reports are ignored: longer than any report takes to come.
const FORGET_REMOVED: Duration = Duration::from_secs(60);

/// The default histogram buckets, seconds: 1-2-5 steps from 1 µs to 10 s (fine enough for
/// loopback round trips, wide enough for a satellite link).
pub(crate) fn default_buckets() -> Vec<f64> {
    // Parsed from decimal text, so that 5e-6 is written 0.000005, not 0.0000049999999999999999.
    let bound = |m: u32, exp: i32| format!("{m}e{exp}").parse().expect("a valid number");
    let mut bounds: Vec<f64> = (-6..1)
        .flat_map(|exp| [1, 2, 5].map(|m| bound(m, exp)))
        .collect();
    bounds.push(10.0);
    bounds
}

/// Starts the endpoint on `addr`: the exposition to feed, and a line saying where it is.
pub(crate) fn start(addr: SocketAddr, buckets: Vec<f64>) -> Result<(Exposition, String), Error> {
    let exposition = Exposition::new(buckets);
    let endpoint = http::serve(addr, exposition.clone())?;
    let reach = if endpoint.addr.ip().is_loopback() {
        ""
    } else {
        " (reachable from the network)"
    };
    let line = format!(
        "sonde: metrics at http://{}/metrics{reach}\n",
        endpoint.addr
    );
    Ok((exposition, line))
}

/// Marks the run finished and, if someone has been scraping, waits (a few of their intervals at
/// most) until a scrape has taken the final values: a run's last seconds are not lost to them.
/// Ctrl-C or SIGTERM ends the wait (the run's own handlers are gone by now, and the signals
/// would otherwise do nothing until it ran out).
pub(crate) fn finish(exposition: &Exposition) {
    exposition.finish();
    let Some(wait) = exposition.linger() else {
        return;
    };
    let asked = Arc::new(AtomicBool::new(false));
    let hooks: Vec<_> = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .filter_map(|signal| signal_hook::flag::register(signal, asked.clone()).ok())
        .collect();
    let deadline = std::time::Instant::now() + wait;
    while !exposition.final_served()
        && std::time::Instant::now() < deadline
        && !asked.load(Ordering::Relaxed)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for hook in hooks {
        signal_hook::low_level::unregister(hook);
    }
}

/// A histogram as Prometheus wants it: cumulative counts at each bound, their sum and count.
#[derive(Debug, Clone)]
struct Buckets {
    bounds_s: Arc<[f64]>,
    /// Values at or below each bound.
    cumulative: Vec<u64>,
    sum_s: f64,
    count: u64,
}

impl Buckets {
    fn new(bounds_s: Arc<[f64]>) -> Self {
        Self {
            cumulative: vec![0; bounds_s.len()],
            bounds_s,
            sum_s: 0.0,
            count: 0,
        }
    }

    fn add(&mut self, l: &Latency) {
        for (c, &bound) in self.cumulative.iter_mut().zip(self.bounds_s.iter()) {
            *c += l.count_at_or_below((bound * 1e9).round() as u64);
        }
        self.sum_s += l.sum_ns() / 1e9;
        self.count += l.count();
    }

    fn encode(&self, name: &str, help: &str, target: &Labels, e: &mut DescriptorEncoder) -> Fmt {
        let unit = Unit::Seconds;
        let mut m = e.encode_descriptor(name, help, Some(&unit), MetricType::Histogram)?;
        // The encoder wants each bucket's own count, and adds them up itself.
        let mut below = 0;
        let buckets: Vec<(f64, u64)> = self
            .bounds_s
            .iter()
            .copied()
            .zip(self.cumulative.iter().copied())
            .chain([(f64::INFINITY, self.count)])
            .map(|(bound, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = below.max(cumulative);
                (bound, own)
            })
            .collect();
        m.encode_family(target)?
            .encode_histogram::<Labels>(self.sum_s, self.count, &buckets, None)
    }
}

type Fmt = Result<(), std::fmt::Error>;
/// A pinger's counter: its name (without `_total`), help, and where it is in [`Counters`].
type CounterFamily = (&'static str, &'static str, fn(&Counters) -> u64);
type Labels = Vec<(String, String)>;

/// What a pinger (or loopback run) has measured so far, per target.
#[derive(Debug, Clone)]
struct Probing {
    labels: Labels,
    counters: Counters,
    rtt: Buckets,
    /// STAMP: forward and backward delays.
    one_way: Option<[Buckets; 2]>,
    /// STAMP, where the reflector counts: probes lost forward and backward (never decreasing:
    /// an estimate that moved back would not be a counter).
    lost_split: Option<(u64, u64)>,
}

/// Everything the endpoint serves: the runs' counters so far.
#[derive(Debug, Default)]
struct State {
    probing: Vec<Probing>,
    /// Where each target's series are in `probing`.
    by_target: HashMap<String, usize>,
    /// Targets whose series were removed (a reload), and when: a report of theirs still on its
    /// way does not bring them back. Forgotten after a while, so that churn costs no memory.
    removed: HashMap<String, Instant>,
    /// Each echo thread's counters, latest.
    echoes: Vec<EchoSummary>,
    /// The run has ended; a scrape has served its last values; the time between the last two.
    finished: bool,
    final_served: bool,
    last_scrape_gap: Option<Duration>,
}

/// The shared exposition: fed by the following thread, read by the HTTP thread.
#[derive(Debug, Clone)]
pub(crate) struct Exposition {
    state: Arc<Mutex<State>>,
    bounds_s: Arc<[f64]>,
}

impl Exposition {
    pub(crate) fn new(bounds_s: Vec<f64>) -> Self {
        Self {
            state: Arc::default(),
            bounds_s: bounds_s.into(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding it leaves plain counters: still worth serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one interval of the run toward `target`: with several targets, each one's to its
    /// own series (the total is Prometheus's to make).
    pub(crate) fn add_interval(&self, target: &str, report: &IntervalReport) {
        let mut state = self.lock();
        if report.by_target.is_empty() {
            self.add_to(&mut state, target, report);
        }
        for part in &report.by_target {
            let target = part.target.map(|t| t.to_string()).unwrap_or_default();
            self.add_to(&mut state, &target, part);
        }
    }

    fn add_to(&self, state: &mut State, target: &str, report: &IntervalReport) {
        if state.removed.contains_key(target) {
            return;
        }
        let index = self.target_index(state, target, &[]);
        let p = &mut state.probing[index];
        if let Some((forward, backward)) = report.lost_split {
            let (f, b) = p.lost_split.get_or_insert((0, 0));
            (*f, *b) = ((*f).max(forward), (*b).max(backward));
        }
        p.counters.add(&report.counters);
        p.rtt.add(&report.rtt);
        if let Some(ways) = &report.one_way {
            let fresh = || Buckets::new(self.bounds_s.clone());
            let [f, b] = p.one_way.get_or_insert_with(|| [fresh(), fresh()]);
            f.add(&ways[0]);
            b.add(&ways[1]);
        }
    }

    /// Starts `target`'s series at zero, before its first interval is in, with `labels`
    /// (from a targets file: `name` and others) beside `target`.
    pub(crate) fn add_target(&self, target: &str, labels: &[(String, String)]) {
        let mut state = self.lock();
        state.removed.remove(target);
        self.target_index(&mut state, target, labels);
    }

    /// Takes `target`'s series out of the exposition (a reload removed the target).
    pub(crate) fn remove_target(&self, target: &str) {
        let mut state = self.lock();
        if let Some(i) = state.by_target.remove(target) {
            state.probing.remove(i);
            for index in state.by_target.values_mut() {
                *index -= usize::from(*index > i);
            }
        }
        let now = Instant::now();
        state
            .removed
            .retain(|_, at| now.duration_since(*at) < FORGET_REMOVED);
        state.removed.insert(target.to_string(), now);
    }

    fn target_index(&self, state: &mut State, target: &str, labels: &[(String, String)]) -> usize {
        if let Some(&i) = state.by_target.get(target) {
            return i;
        }
        let mut all = vec![("target".to_string(), target.to_string())];
        all.extend_from_slice(labels);
        state.probing.push(Probing {
            labels: all,
            counters: Counters::default(),
            rtt: Buckets::new(self.bounds_s.clone()),
            one_way: None,
            lost_split: None,
        });
        let i = state.probing.len() - 1;
        state.by_target.insert(target.to_string(), i);
        i
    }

    /// Sets echo thread `index`'s counters so far.
    pub(crate) fn set_echo(&self, index: usize, summary: EchoSummary) {
        let mut state = self.lock();
        if state.echoes.len() <= index {
            state.echoes.resize_with(index + 1, EchoSummary::default);
        }
        state.echoes[index] = summary;
    }

    /// The run has ended: what is held now is final.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
    }

    /// Whether someone scrapes this endpoint regularly (twice at least: one look with curl is
    /// not a scraper to wait for), and how long to wait for their next scrape to take the final
    /// values: three of their intervals, at most 30 s.
    pub(crate) fn linger(&self) -> Option<Duration> {
        let state = self.lock();
        let gap = state.last_scrape_gap.filter(|_| !state.final_served)?;
        Some((gap * 3).min(Duration::from_secs(30)))
    }

    /// Whether a scrape has served the final values.
    pub(crate) fn final_served(&self) -> bool {
        self.lock().final_served
    }

    /// One scrape: OpenMetrics text (ending in `# EOF`) or Prometheus text 0.0.4.
    pub(crate) fn scrape(&self, openmetrics: bool, gap: Option<Duration>) -> String {
        let snapshot = {
            let mut state = self.lock();
            state.final_served |= state.finished;
            if gap.is_some() {
                state.last_scrape_gap = gap;
            }
            Snapshot {
                probing: state.probing.clone(),
                echoes: state.echoes.clone(),
            }
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(snapshot));
        let mut text = String::new();
        let encoded = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        };
        encoded.expect("writing to a String does not fail");
        text
    }
}

/// A copy of the state, encoded outside the lock.
#[derive(Debug)]
struct Snapshot {
    probing: Vec<Probing>,
    echoes: Vec<EchoSummary>,
}

/// A counter family: one value per label set.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, values: &[(&Labels, u64)]) -> Fmt {
    if values.is_empty() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in values {
        m.encode_family(*labels)?
            .encode_counter::<Labels, u64, f64>(value, None)?;
    }
    Ok(())
}

impl Collector for Snapshot {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        let of = |f: fn(&Counters) -> u64| -> Vec<(&Labels, u64)> {
            self.probing
                .iter()
                .map(|p| (&p.labels, f(&p.counters)))
                .collect()
        };
        let families: [CounterFamily; 10] = [
            ("sonde_probes_sent", "Probes sent.", |c| c.sent),
            ("sonde_probes_received", "Replies received in time.", |c| {
                c.received
            }),
            (
                "sonde_probes_lost",
                "Probes not answered by their timeout.",
                |c| c.lost,
            ),
            (
                "sonde_probes_late",
                "Replies after their probe's timeout.",
                |c| c.late,
            ),
            (
                "sonde_probes_duplicates",
                "Replies to a probe already answered.",
                |c| c.duplicates,
            ),
            (
                "sonde_probes_reordered",
                "Replies overtaken by a later probe's.",
                |c| c.reordered,
            ),
            (
                "sonde_probes_mismatched",
                "Replies from the target that were not a faithful answer.",
                |c| c.mismatched,
            ),
            (
                "sonde_probes_not_sent",
                "Probes the kernel refused to send.",
                |c| c.not_sent,
            ),
            (
                "sonde_foreign_datagrams",
                "Datagrams from elsewhere or from other runs, ignored.",
                |c| c.foreign,
            ),
            (
                "sonde_local_drops",
                "Datagrams the pinger's own socket dropped for want of room.",
                |c| c.local_drops,
            ),
        ];
        for (name, help, f) in families {
            counter(&mut e, name, help, &of(f))?;
        }
        let split = |way: fn((u64, u64)) -> u64| -> Vec<(&Labels, u64)> {
            self.probing
                .iter()
                .filter_map(|p| p.lost_split.map(|s| (&p.labels, way(s))))
                .collect()
        };
        let help = "STAMP: probes lost on the way to the reflector (by its count).";
        counter(&mut e, "sonde_forward_lost", help, &split(|s| s.0))?;
        let help = "STAMP: answers lost on the way back (by the reflector's count).";
        counter(&mut e, "sonde_backward_lost", help, &split(|s| s.1))?;
        for p in &self.probing {
            let help = "Round-trip times of replies received in time (lost probes are not in it).";
            p.rtt.encode("sonde_rtt", help, &p.labels, &mut e)?;
        }
        for p in &self.probing {
            if let Some([forward, _]) = &p.one_way {
                let help = "STAMP: delay from sender to reflector (T2 - T1).";
                forward.encode("sonde_forward_delay", help, &p.labels, &mut e)?;
            }
        }
        for p in &self.probing {
            if let Some([_, backward]) = &p.one_way {
                let help = "STAMP: delay from reflector to sender (T4 - T3).";
                backward.encode("sonde_backward_delay", help, &p.labels, &mut e)?;
            }
        }
        self.encode_echo(&mut e)
    }
}

impl Snapshot {
    fn encode_echo(&self, e: &mut DescriptorEncoder) -> Fmt {
        if self.echoes.is_empty() {
            return Ok(());
        }
        let total = crate::model::aggregate::merge_echoes(&self.echoes);
        let bind: Labels = vec![("bind".into(), total.bind.clone())];
        counter(
            e,
            "sonde_echo_datagrams",
            "Datagrams received by the echo.",
            &[(&bind, total.datagrams)],
        )?;
        counter(
            e,
            "sonde_echo_bytes",
            "Bytes received by the echo.",
            &[(&bind, total.bytes)],
        )?;
        let r = &total.refused;
        let reasons = [
            ("loop_protection", r.loop_protection),
            ("not_allowed", r.not_allowed),
            ("source_rate_limited", r.source_rate_limited),
            ("total_rate_limited", r.total_rate_limited),
            ("auth_failed", r.auth_failed),
        ];
        let labels: Vec<Labels> = reasons
            .iter()
            .map(|(reason, _)| {
                vec![
                    ("bind".into(), total.bind.clone()),
                    ("reason".into(), reason.to_string()),
                ]
            })
            .collect();
        let values: Vec<(&Labels, u64)> = labels
            .iter()
            .zip(reasons)
            .map(|(l, (_, n))| (l, n))
            .collect();
        counter(
            e,
            "sonde_echo_refused",
            "Datagrams the echo did not answer, by reason.",
            &values,
        )?;
        counter(
            e,
            "sonde_echo_local_drops",
            "Datagrams the echo's own socket dropped for want of room.",
            &[(&bind, total.local_drops)],
        )
    }
}
