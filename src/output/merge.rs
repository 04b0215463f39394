//! `sonde merge`: interval logs from many runs or hosts combined into one distribution. This is
//! how pingers on many machines are aggregated, with no server of our own: each writes
//! `--export-hlog`, and the logs are merged wherever they are collected.

use super::export::{self, hlog};
use crate::error::Error;
use crate::model::{Latency, LatencySummary};
use serde::Serialize;

/// What the merged logs hold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MergeSummary {
    pub logs: Vec<String>,
    pub intervals: u64,
    /// Round trips in all the logs; min, max, mean and stddev come from the histograms (3
    /// significant digits), like the percentiles.
    pub rtt: Option<LatencySummary>,
}

/// Reads and adds every log (`-` reads stdin); returns the summary and the merged distribution.
pub(crate) fn merge(paths: &[String]) -> Result<(MergeSummary, Latency), Error> {
    let mut total = Latency::new();
    let mut intervals = 0u64;
    for path in paths {
        let bytes = export::read("LOG", path)?;
        for interval in hlog::read("LOG", path, &bytes)? {
            let latency = Latency::from_histogram(&interval.histogram)
                .map_err(|e| Error::config("LOG", format!("{path}: {e}")))?;
            total.merge(&latency);
            intervals += 1;
        }
    }
    let summary = MergeSummary {
        logs: paths.to_vec(),
        intervals,
        rtt: total.summary(),
    };
    Ok((summary, total))
}
