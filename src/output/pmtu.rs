//! The path MTU search (`ping --pmtu`) as text: a line per size tried, then the answer.

use crate::model::pmtu::{Outcome, PmtuReport, Step};
use std::fmt::Write;

/// The heading, before the first size.
pub(crate) fn heading(target: &str, probes: u64, timeout_ms: f64) -> String {
    format!(
        "SONDE path MTU to {target}: {probes} probes a size with don't-fragment, each size waits \
         {timeout_ms} ms\n"
    )
}

/// One size tried.
pub(crate) fn step_line(step: &Step) -> String {
    let what = match step.outcome {
        Outcome::Back => "came back".to_string(),
        Outcome::TooBig { mtu: Some(mtu) } => format!("too big (the path MTU is {mtu} B)"),
        Outcome::TooBig { mtu: None } => "too big".to_string(),
        Outcome::Lost => "lost (no reply, no word why)".to_string(),
    };
    format!("{:>7} B: {what}\n", step.size_bytes)
}

/// The answer, after the last size.
pub(crate) fn text(r: &PmtuReport) -> String {
    let mut out = String::new();
    let (Some(size), Some(mtu)) = (r.largest_size_bytes, r.path_mtu_bytes) else {
        return out;
    };
    let _ = write!(
        out,
        "path MTU {mtu} B: --size {size} is the largest probe that comes back with --df"
    );
    match r.kernel_mtu_bytes {
        Some(k) if k as usize > mtu => {
            let _ = write!(
                out,
                " (the kernel says {k} B: a black hole drops bigger packets without a word)"
            );
        }
        _ => {}
    }
    out.push('\n');
    out
}
