//! Following a run as it goes, on the thread that started it: the flows' interval reports are
//! combined and turned into interval lines, the JSON stream and the interval log, and a progress
//! bar is kept up to date.

use super::export::hlog;
use super::{out, report};
use crate::error::Error;
use crate::model::interval::Combiner;
use crate::model::{IntervalReport, IntervalSummary};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a flow's thread tells the following thread.
pub(crate) enum Message {
    Interval(usize, Box<IntervalReport>),
    /// The flow has ended: it will report no more.
    Finished(usize),
}

/// Sends [`Message::Finished`] when dropped, so a flow that fails (or panics) still ends the
/// following loop.
pub(crate) struct FinishGuard {
    pub flow: usize,
    pub tx: Sender<Message>,
}

impl Drop for FinishGuard {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Finished(self.flow));
    }
}

/// How far a run of known length has got.
pub(crate) enum Length {
    /// Probes in all, and each flow's count of probes handled so far.
    Probes(u64, Vec<Arc<AtomicU64>>),
    Time(Duration),
}

/// A progress bar on stderr, for a terminal only.
pub(crate) struct Progress {
    bar: ProgressBar,
    length: Length,
    started: Instant,
}

impl Progress {
    /// A bar if stderr is a terminal; `None` otherwise.
    pub(crate) fn on_terminal(length: Length) -> Option<Self> {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let (total, template) = match &length {
            Length::Probes(n, _) => (*n, "{bar:40} {pos}/{len} probes, {elapsed} (eta {eta})"),
            Length::Time(d) => (d.as_millis() as u64, "{bar:40} {elapsed} of {msg}"),
        };
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template(template).expect("a valid template"));
        if let Length::Time(d) = &length {
            bar.set_message(humantime::format_duration(*d).to_string());
        }
        Some(Self {
            bar,
            length,
            started: Instant::now(),
        })
    }

    fn update(&self) {
        let position = match &self.length {
            Length::Probes(_, counters) => counters.iter().map(|c| c.load(Ordering::Relaxed)).sum(),
            Length::Time(_) => self.started.elapsed().as_millis() as u64,
        };
        self.bar.set_position(position);
    }
}

/// What to do with each combined interval.
#[derive(Default)]
pub(crate) struct Outputs {
    /// Interval lines on stdout (text).
    pub lines: bool,
    /// Interval objects on stdout (JSON lines).
    pub jsonl: bool,
    pub hlog: Option<hlog::Writer>,
    pub progress: Option<Progress>,
    /// `--metrics`: the exposition, and the target the run's series are labelled with.
    pub metrics: Option<(super::metrics::Exposition, String)>,
    /// Keep every interval for the end (a plot): otherwise a run that never ends would grow.
    pub keep: bool,
    /// Done on every turn of the following loop (some ten times a second): the targets file
    /// re-read when asked.
    pub each_turn: Option<Box<dyn FnMut() + Send>>,
}

/// Runs until every flow has finished; returns every combined interval, in order, when asked to
/// keep them (`outputs.keep`), none otherwise.
pub(crate) fn follow(
    rx: Receiver<Message>,
    flows: usize,
    mut outputs: Outputs,
) -> Result<Vec<IntervalSummary>, Error> {
    let mut combiner = Combiner::new(flows);
    let mut intervals = Vec::new();
    let mut error = None;
    while !combiner.all_finished() {
        let ready = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Message::Interval(flow, report)) => combiner.add(flow, *report),
            Ok(Message::Finished(flow)) => combiner.finish(flow),
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        for report in ready {
            if let Err(e) = emit(&report, &mut outputs) {
                // Keep following (the flows still need their reports taken), but stop writing.
                error.get_or_insert(e);
                outputs.hlog = None;
            }
            if outputs.keep {
                intervals.push(IntervalSummary::of(&report));
            }
        }
        if let Some(progress) = &outputs.progress {
            progress.update();
        }
        if let Some(turn) = outputs.each_turn.as_mut() {
            turn();
        }
    }
    if let Some(progress) = outputs.progress {
        progress.bar.finish_and_clear();
    }
    error.map_or(Ok(intervals), Err)
}

fn emit(report: &IntervalReport, outputs: &mut Outputs) -> Result<(), Error> {
    let summary = IntervalSummary::of(report);
    let text = if outputs.jsonl {
        Some(report::json_event("interval", &summary) + "\n")
    } else if outputs.lines {
        Some(report::interval_line(&summary) + "\n")
    } else {
        None
    };
    if let Some(text) = text {
        match &outputs.progress {
            Some(p) => p.bar.suspend(|| out(&text)),
            None => out(&text),
        }
    }
    if let Some((exposition, target)) = &outputs.metrics {
        exposition.add_interval(target, report);
    }
    if let Some(log) = outputs.hlog.as_mut() {
        let length = Duration::from_nanos(report.end_ns.saturating_sub(report.start_ns));
        let start = Duration::from_nanos(report.start_ns);
        if report.by_target.is_empty() {
            log.write(None, &report.rtt.histogram(), start, length)?;
        }
        // Several targets: one interval each, tagged with its address (together, the total).
        for part in &report.by_target {
            let tag = part.target.map(|t| t.to_string());
            log.write(tag.as_deref(), &part.rtt.histogram(), start, length)?;
        }
    }
    Ok(())
}
