//! HdrHistogram's percentile distribution text (`.hgrm`), as its `outputPercentileDistribution`
//! writes it: the format HdrHistogram's plotter and tools read.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile ticks per halving of the distance to 100%, as HdrHistogram's tools use.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The distribution of `h` (values in ns) with values in milliseconds.
pub fn render(h: &Histogram<u64>) -> String {
    render_scaled(h, 1e6)
}

/// The distribution with values divided by `unit_ratio` (1e6: ns to ms).
pub fn render_scaled(h: &Histogram<u64>, unit_ratio: f64) -> String {
    let digits = usize::from(h.sigfig());
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / unit_ratio;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:12.digits$} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:12.digits$} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, stddev, max) = if !h.is_empty() {
        (h.mean(), h.stdev(), h.max() as f64)
    } else {
        (0.0, 0.0, 0.0)
    };
    let _ = writeln!(
        out,
        "#[Mean    = {:12.digits$}, StdDeviation   = {:12.digits$}]",
        mean / unit_ratio,
        stddev / unit_ratio
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.digits$}, Total count    = {:12}]",
        max / unit_ratio,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count: the power of two that holds 2 × 10^digits.
fn sub_buckets(digits: u8) -> u64 {
    (2 * 10u64.pow(u32::from(digits))).next_power_of_two()
}

/// Reads the distribution back: (quantile, value) pairs, for plotting a saved `.hgrm`.
pub fn parse(text: &str) -> Option<Vec<(f64, f64)>> {
    let points: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let value = cols.next()?.parse().ok()?;
            let q = cols.next()?.parse().ok()?;
            Some((q, value))
        })
        .collect();
    (!points.is_empty()).then_some(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_hdrhistogram() {
        let mut h = Histogram::<u64>::new_with_bounds(1, crate::model::MAX_NS, 3).unwrap();
        for v in 1..=4u64 {
            h.record(v * 1_000_000).unwrap();
        }
        let text = render(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "       1.000 0.000000000000          1           1.00"
        );
        let last = lines.iter().rfind(|l| !l.starts_with('#')).unwrap();
        assert_eq!(*last, "       4.002 1.000000000000          4");
        assert!(text.contains("#[Max     =        4.002, Total count    =            4]"));
        assert!(text.ends_with("#[Buckets =           32, SubBuckets     =         2048]\n"));
        let parsed = parse(&text).unwrap();
        assert_eq!(parsed.first(), Some(&(0.0, 1.0)));
        assert_eq!(parsed.last(), Some(&(1.0, 4.002)));
    }

    #[test]
    fn sub_buckets_follow_the_precision() {
        assert_eq!(sub_buckets(3), 2048);
        assert_eq!(sub_buckets(2), 256);
    }
}
