//! Outputs: turning plain results ([`crate::model`]) into text, JSON, files and charts. Each
//! format is a file of its own and depends on the model alone, never on a role.
//!
//! - [`report`]: text and JSON of summaries, per-probe and interval lines (STAMP's in `stamp`);
//! - [`follow`]: a run followed as it goes (intervals combined, the stream, a progress bar);
//! - [`export`]: files (`--export-json/csv/hgrm/hlog`) and their readers;
//! - [`metrics`]: OpenMetrics for Prometheus (`--metrics`);
//! - [`plot`]: SVG charts; [`pmtu`]: the path MTU search; [`merge`]: interval logs combined; [`threshold`]: `--fail-*`.

pub(crate) mod export;
pub(crate) mod follow;
pub(crate) mod merge;
pub(crate) mod metrics;
pub(crate) mod plot;
pub(crate) mod pmtu;
pub(crate) mod report;
mod stamp;
pub(crate) mod threshold;

use std::io::Write;

/// Writes to stdout, ignoring a closed pipe (`sonde ... | head` must not panic).
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Writes `value` to stdout as one line of JSON, as it is encoded (see [`export::write_json`]).
pub(crate) fn out_json(value: &impl serde::Serialize) {
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = serde_json::to_writer(&mut stdout, value);
    let _ = stdout.write_all(b"\n");
    let _ = stdout.flush();
}
