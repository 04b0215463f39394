//! Charts as SVG: RTT over time (losses and outages marked) above the percentile distribution on
//! HdrHistogram's "nines" axis; several runs share both panels, one colour each.
//!
//! A [`Run`] is plain data, made from a live run or read back from any file sonde writes: the
//! per-probe CSV, the interval log, the JSON summary or stream, or a `.hgrm` distribution.

use super::export::{self, csv, hgrm, hlog};
use crate::error::{Error, FileOp};
use crate::model::{IntervalSummary, Latency, PingSummary};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use std::io::{BufRead, BufReader};

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 820;
/// Above this many received probes a CSV is drawn as per-bucket ranges rather than points.
const MAX_POINTS: usize = 20_000;
/// Time buckets for a CSV too long to draw point by point.
const BUCKETS: usize = 1_000;
/// Most loss markers drawn per run (the rest are in the same places, or too dense to see).
pub(crate) const MAX_LOSS_MARKS: usize = 5_000;
/// The distribution axis reaches this many nines at most (99.9999%).
const MAX_NINES: f64 = 6.0;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(23, 190, 207),
];
const LOSS: RGBColor = RGBColor(214, 39, 40);
/// STAMP's forward and backward delay lines.
const WAYS: [(RGBColor, &str); 2] = [
    (RGBColor(44, 160, 44), "forward delay"),
    (RGBColor(148, 103, 189), "backward delay"),
];

/// One range of RTTs over a stretch of time: per interval, or per bucket of probes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Span {
    pub start_s: f64,
    pub end_s: f64,
    /// Middle line (median or mean) and the band around it, ms.
    pub mid_ms: f64,
    pub low_ms: f64,
    pub high_ms: f64,
}

/// What one run contributes to a chart.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Run {
    pub label: String,
    /// Received probes, (time s, RTT ms), when few enough to draw each.
    pub points: Vec<(f64, f64)>,
    /// RTT ranges over time, when probes are too many to draw (or only intervals are known).
    pub spans: Vec<Span>,
    /// What the spans' middle line and band are, for the legend.
    pub span_meaning: &'static str,
    /// When lost probes were sent (seconds into the run; at most [`MAX_LOSS_MARKS`] of them),
    /// and how many were lost in all.
    pub lost_at: Vec<f64>,
    pub lost: u64,
    /// Outages: (start s, duration s).
    pub outages: Vec<(f64, f64)>,
    /// The distribution: (quantile, RTT ms).
    pub distribution: Vec<(f64, f64)>,
    /// STAMP: forward and backward delay over time, (time s, ms), per interval or bucket.
    pub ways: [Vec<(f64, f64)>; 2],
}

impl Run {
    /// A run just measured: its intervals, the send times of (some of) its lost probes, its
    /// outages and whole distribution.
    pub(crate) fn live(
        summary: &PingSummary,
        intervals: &[IntervalSummary],
        lost_sent_ns: &[u64],
        rtt: &Histogram<u64>,
    ) -> Self {
        let mut run = Self::from_intervals(intervals);
        run.lost_at = lost_sent_ns.iter().map(|&ns| ns as f64 / 1e9).collect();
        run.lost = summary.counters.lost;
        run.label = summary.target.clone();
        run.outages = summary
            .outages
            .iter()
            .map(|o| (o.start_s, o.duration_s))
            .collect();
        run.distribution = distribution(rtt);
        run
    }

    fn from_intervals(intervals: &[IntervalSummary]) -> Self {
        let mut run = Run {
            span_meaning: "p50 per interval, band min..p99",
            // (and STAMP's forward and backward delay: p50 per interval)
            ..Run::default()
        };
        for i in intervals {
            if let Some(r) = &i.rtt {
                run.spans.push(Span {
                    start_s: i.start_s,
                    end_s: i.end_s,
                    mid_ms: r.p50_us / 1e3,
                    low_ms: r.min_us / 1e3,
                    high_ms: r.p99_us / 1e3,
                });
            }
            let mid = (i.start_s + i.end_s) / 2.0;
            for (way, delay) in run
                .ways
                .iter_mut()
                .zip([&i.forward_delay, &i.backward_delay])
            {
                way.extend(delay.as_ref().map(|d| (mid, d.p50_us / 1e3)));
            }
            // An interval counts the timeouts that fired in it: mark them there (a run with
            // per-probe records marks each probe at its send time instead).
            if i.counters.lost > 0 {
                run.lost_at.push((i.start_s + i.end_s) / 2.0);
                run.lost += i.counters.lost;
            }
        }
        run
    }

    /// Reads any file sonde writes; the label is the file's name.
    pub(crate) fn load(path: &str) -> Result<Self, Error> {
        let bad = |what: &str| Error::config("INPUT", format!("{path}: {what}"));
        let file =
            std::fs::File::open(path).map_err(|e| Error::file("INPUT", FileOp::Read, path, e))?;
        let mut reader = BufReader::new(file);
        let head = reader
            .fill_buf()
            .map_err(|e| Error::file("INPUT", FileOp::Read, path, e))?;
        let head = String::from_utf8_lossy(&head[..head.len().min(512)]).to_string();
        let mut run = if head.starts_with(csv::HEADER.trim_end()) {
            load_csv(path)?
        } else if head.trim_start().starts_with('{') {
            load_json(&export::read("INPUT", path)?).ok_or_else(|| {
                bad("JSON that is neither a sonde summary nor a sonde JSON stream")
            })?
        } else if head.trim_start().starts_with("Value") {
            let text = String::from_utf8_lossy(&export::read("INPUT", path)?).to_string();
            Run {
                distribution: hgrm::parse(&text).ok_or_else(|| bad("no percentiles in it"))?,
                ..Run::default()
            }
        } else if head.starts_with('#') || head.starts_with("\"StartTimestamp\"") {
            load_hlog(path, &export::read("INPUT", path)?)?
        } else {
            return Err(bad(
                "not a file sonde writes (CSV export, interval log, JSON, .hgrm)",
            ));
        };
        run.label = std::path::Path::new(path)
            .file_name()
            .map_or_else(|| path.to_string(), |n| n.to_string_lossy().to_string());
        Ok(run)
    }
}

/// HdrHistogram's percentile ticks as (quantile, ms) points.
fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| (v.quantile_iterated_to(), v.value_iterated_to() as f64 / 1e6))
        .collect()
}

fn load_hlog(path: &str, bytes: &[u8]) -> Result<Run, Error> {
    let logged = hlog::read("INPUT", path, bytes)?;
    let mut total = Latency::new();
    let mut intervals = Vec::new();
    for (index, interval) in logged.iter().enumerate() {
        let latency = Latency::from_histogram(&interval.histogram)
            .map_err(|e| Error::config("INPUT", format!("{path}: {e}")))?;
        total.merge(&latency);
        let start_s = interval.start.as_secs_f64();
        intervals.push(IntervalSummary {
            index: index as u64,
            start_s,
            end_s: start_s + interval.length.as_secs_f64(),
            counters: Default::default(),
            loss_pct: 0.0,
            rtt: latency.summary(),
            forward_delay: None,
            backward_delay: None,
        });
    }
    let mut run = Run::from_intervals(&intervals);
    run.distribution = distribution(&total.histogram());
    Ok(run)
}

/// A JSON summary (`--json`, `--export-json`) or a JSON stream (`--format jsonl`).
fn load_json(bytes: &[u8]) -> Option<Run> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut intervals = Vec::new();
    let mut summary = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        match value.get("event").and_then(|e| e.as_str()) {
            Some("interval") => intervals.push(serde_json::from_value(value["data"].clone()).ok()?),
            Some("summary") => summary = Some(value["data"].clone()),
            Some(_) => {}
            None => summary = Some(value),
        }
    }
    let mut run = Run::from_intervals(&intervals);
    if let Some(s) = summary {
        if let Some(rtt) = s.get("rtt").filter(|r| r.is_object()) {
            let us = |k: &str| rtt.get(k).and_then(|v| v.as_f64());
            for (q, key) in [
                (0.0, "min_us"),
                (0.5, "p50_us"),
                (0.9, "p90_us"),
                (0.99, "p99_us"),
                (0.999, "p999_us"),
                (1.0, "max_us"),
            ] {
                run.distribution.extend(us(key).map(|v| (q, v / 1e3)));
            }
        }
        for o in s
            .get("outages")
            .and_then(|o| o.as_array())
            .into_iter()
            .flatten()
        {
            if let (Some(start), Some(d)) = (o["start_s"].as_f64(), o["duration_s"].as_f64()) {
                run.outages.push((start, d));
            }
        }
    } else if intervals.is_empty() {
        return None;
    }
    Some(run)
}

/// The per-probe CSV, read twice: once for the time span, once for the points (or the buckets,
/// when there are too many to draw). Memory stays bounded whatever the file's length.
fn load_csv(path: &str) -> Result<Run, Error> {
    let rows = || -> Result<_, Error> {
        let file =
            std::fs::File::open(path).map_err(|e| Error::file("INPUT", FileOp::Read, path, e))?;
        Ok(BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| csv::parse_row(&l)))
    };
    let (mut end_ns, mut received) = (0u64, 0usize);
    for row in rows()? {
        end_ns = end_ns.max(row.sent_ns);
        received += usize::from(row.rtt_ns.is_some() && is_received(&row.status));
    }
    let bucketed = received > MAX_POINTS;
    let width_ns = (end_ns / BUCKETS as u64).max(1);
    let mut buckets: Vec<(u64, f64, f64, f64)> = Vec::new(); // count, sum, min, max (ms)
                                                             // STAMP: forward and backward delay per time bucket (count, sum ms), whatever the length.
    let mut way_buckets: Vec<[(u64, f64); 2]> = Vec::new();
    let mut run = Run {
        span_meaning: "mean per time bucket, band min..max",
        ..Run::default()
    };
    let mut all = Latency::new();
    for row in rows()? {
        let t = row.sent_ns as f64 / 1e9;
        match (row.rtt_ns, row.status.as_str()) {
            (Some(rtt), status) if is_received(status) => {
                all.record(rtt);
                if let Some((forward, backward, _)) = row.split {
                    let b = ((row.sent_ns / width_ns) as usize).min(BUCKETS);
                    if way_buckets.len() <= b {
                        way_buckets.resize(b + 1, [(0, 0.0); 2]);
                    }
                    // Below zero (a clock offset larger than the delay): not drawn.
                    for (w, ns) in way_buckets[b].iter_mut().zip([forward, backward]) {
                        if ns >= 0 {
                            *w = (w.0 + 1, w.1 + ns as f64 / 1e6);
                        }
                    }
                }
                let ms = rtt as f64 / 1e6;
                if bucketed {
                    let b = ((row.sent_ns / width_ns) as usize).min(BUCKETS);
                    if buckets.len() <= b {
                        buckets.resize(b + 1, (0, 0.0, f64::MAX, 0.0));
                    }
                    let e = &mut buckets[b];
                    *e = (e.0 + 1, e.1 + ms, e.2.min(ms), e.3.max(ms));
                } else {
                    run.points.push((t, ms));
                }
            }
            (_, "lost" | "unreachable") => {
                run.lost += 1;
                if run.lost_at.len() < MAX_LOSS_MARKS {
                    run.lost_at.push(t);
                }
            }
            _ => {}
        }
    }
    for (b, &(count, sum, min, max)) in buckets.iter().enumerate() {
        if count > 0 {
            let start_s = (b as u64 * width_ns) as f64 / 1e9;
            run.spans.push(Span {
                start_s,
                end_s: start_s + width_ns as f64 / 1e9,
                mid_ms: sum / count as f64,
                low_ms: min,
                high_ms: max,
            });
        }
    }
    for (b, ways) in way_buckets.iter().enumerate() {
        let mid_s = (b as f64 + 0.5) * width_ns as f64 / 1e9;
        for (line, &(count, sum)) in run.ways.iter_mut().zip(ways) {
            if count > 0 {
                line.push((mid_s, sum / count as f64));
            }
        }
    }
    run.distribution = distribution(&all.histogram());
    Ok(run)
}

fn is_received(status: &str) -> bool {
    matches!(status, "received" | "reordered")
}

/// Where `quantile` sits on the nines axis: 0 at 0%, 1 at 90%, 2 at 99%, ...
fn nines(quantile: f64) -> f64 {
    (-(1.0 - quantile).max(1e-12).log10()).min(MAX_NINES)
}

fn nines_label(x: &f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let text = format!("{pct:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// Draws `runs` into an SVG at `path` (`-` for stdout); `flag` names the option in errors.
pub(crate) fn render(
    flag: &'static str,
    path: &str,
    title: &str,
    runs: &[Run],
) -> Result<(), Error> {
    let svg =
        render_svg(title, runs).map_err(|e| Error::config(flag, format!("drawing failed: {e}")))?;
    export::write_all(flag, &[path.to_string()], &svg)
}

/// The chart as SVG text.
pub(crate) fn render_svg(title: &str, runs: &[Run]) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(title, ("sans-serif", 22))?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2 - 10);
        draw_timeline(&top, runs)?;
        draw_distribution(&bottom, runs)?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    runs: &[Run],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let end = runs
        .iter()
        .flat_map(|r| {
            r.points
                .iter()
                .map(|p| p.0)
                .chain(r.spans.iter().map(|s| s.end_s))
                .chain(r.lost_at.iter().copied())
                .chain(r.outages.iter().map(|o| o.0 + o.1))
        })
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let top = runs
        .iter()
        .flat_map(|r| {
            r.points
                .iter()
                .map(|p| p.1)
                .chain(r.spans.iter().map(|s| s.high_ms))
                .chain(r.ways.iter().flatten().map(|w| w.1))
        })
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("RTT over time", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..top)?;
    let stamp = runs.iter().any(|r| r.ways.iter().any(|w| !w.is_empty()));
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(if stamp {
            "RTT, one-way delay (ms)"
        } else {
            "RTT (ms)"
        })
        .draw()?;
    for run in runs {
        for &(start, duration) in &run.outages {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, 0.0), (start + duration, top)],
                    LOSS.mix(0.15).filled(),
                )))?
                .label(format!("{}: outage", run.label))
                .legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 16, y + 5)], LOSS.mix(0.3).filled())
                });
        }
    }
    for (i, run) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !run.points.is_empty() {
            chart
                .draw_series(
                    run.points
                        .iter()
                        .map(|&p| Circle::new(p, 1, color.filled())),
                )?
                .label(format!("{}: RTT per probe", run.label))
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled()));
        }
        // Bands only for a single run: several overlap into mud.
        if runs.len() == 1 {
            chart.draw_series(run.spans.iter().map(|s| {
                Rectangle::new(
                    [(s.start_s, s.low_ms), (s.end_s, s.high_ms)],
                    color.mix(0.25).filled(),
                )
            }))?;
        }
        if !run.spans.is_empty() {
            // One line per stretch without gaps: an interval with no replies breaks it.
            let mut stretches: Vec<Vec<(f64, f64)>> = Vec::new();
            let mut last_end = f64::NEG_INFINITY;
            for span in &run.spans {
                if span.start_s - last_end > (span.end_s - span.start_s) * 0.5 {
                    stretches.push(Vec::new());
                }
                last_end = span.end_s;
                if let Some(stretch) = stretches.last_mut() {
                    stretch.push(((span.start_s + span.end_s) / 2.0, span.mid_ms));
                }
            }
            for stretch in stretches.iter().skip(1) {
                chart.draw_series(LineSeries::new(stretch.clone(), color.stroke_width(2)))?;
            }
            chart
                .draw_series(LineSeries::new(
                    stretches.first().cloned().unwrap_or_default(),
                    color.stroke_width(2),
                ))?
                .label(format!("{}: RTT {}", run.label, run.span_meaning))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        for (line, (color, name)) in run.ways.iter().zip(WAYS) {
            if !line.is_empty() {
                chart
                    .draw_series(LineSeries::new(line.clone(), color.stroke_width(1)))?
                    .label(format!("{}: {name}", run.label))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(1))
                    });
            }
        }
        if !run.lost_at.is_empty() {
            chart
                .draw_series(
                    run.lost_at
                        .iter()
                        .take(MAX_LOSS_MARKS)
                        .map(|&t| TriangleMarker::new((t, top * 0.97), 4, LOSS.filled())),
                )?
                .label(format!("{}: lost ({})", run.label, run.lost))
                .legend(|(x, y)| TriangleMarker::new((x + 8, y), 4, LOSS.filled()));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn draw_distribution<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    runs: &[Run],
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    // As far as the data reaches: the last tick below 100%, rounded up; 100% sits at the edge.
    let right = runs
        .iter()
        .flat_map(|r| {
            r.distribution
                .iter()
                .filter(|p| p.0 < 1.0)
                .map(|p| nines(p.0))
        })
        .fold(2.0f64, f64::max)
        .ceil()
        .min(MAX_NINES);
    let top = runs
        .iter()
        .flat_map(|r| r.distribution.iter().map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption("RTT percentile distribution", ("sans-serif", 18))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..right, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("RTT (ms)")
        .x_labels(right as usize + 1)
        .x_label_formatter(&nines_label)
        .draw()?;
    for (i, run) in runs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = run
            .distribution
            .iter()
            .map(|&(q, v)| (nines(q).min(right), v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(run.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        if points.len() <= 12 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
        assert_eq!(nines_label(&0.0), "0%");
        assert_eq!(nines_label(&1.0), "90%");
        assert_eq!(nines_label(&3.0), "99.9%");
    }
}
