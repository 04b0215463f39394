//! `--fail-*` thresholds: turn a run's summary into a pass or a distinct exit status, so sonde
//! can gate CI or a monitoring check.

use crate::model::PingSummary;
use std::time::Duration;

/// The exit status when a threshold is crossed.
pub(crate) const EXIT_CROSSED: i32 = 3;

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Thresholds {
    /// Loss above this percentage fails.
    pub loss_pct: Option<f64>,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub p999: Option<Duration>,
}

impl Thresholds {
    /// One line per threshold crossed; none when the run passed. A latency threshold is crossed
    /// when nothing was received: no data is not a pass.
    pub(crate) fn crossed(&self, s: &PingSummary) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(limit) = self.loss_pct {
            if s.loss_pct > limit {
                out.push(format!("loss {:.3}% > --fail-loss {limit}%", s.loss_pct));
            }
        }
        let latencies = [
            (
                "p50",
                "--fail-p50",
                self.p50,
                s.rtt.as_ref().map(|r| r.p50_us),
            ),
            (
                "p99",
                "--fail-p99",
                self.p99,
                s.rtt.as_ref().map(|r| r.p99_us),
            ),
            (
                "p99.9",
                "--fail-p999",
                self.p999,
                s.rtt.as_ref().map(|r| r.p999_us),
            ),
        ];
        for (name, flag, limit, value) in latencies {
            let Some(limit) = limit else { continue };
            let limit_us = limit.as_secs_f64() * 1e6;
            match value {
                None => out.push(format!(
                    "{flag} {limit:?}: no replies to measure {name} from"
                )),
                Some(us) if us > limit_us => out.push(format!(
                    "rtt {name} {:.3} ms > {flag} {}",
                    us / 1e3,
                    humantime::format_duration(limit)
                )),
                Some(_) => {}
            }
        }
        out
    }

    /// As [`Thresholds::crossed`], for each target of a run of several (each line starting
    /// with the target's name), or for the run.
    pub(crate) fn crossed_by_target(&self, s: &PingSummary) -> Vec<String> {
        if s.targets.is_empty() {
            return self.crossed(s);
        }
        s.targets
            .iter()
            .flat_map(|t| {
                let name = t.label();
                self.crossed(t)
                    .into_iter()
                    .map(move |line| format!("{name}: {line}"))
            })
            .collect()
    }
}
