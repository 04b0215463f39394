//! Latency statistics: an HDR histogram for percentiles, exact moments, RFC 3550 jitter.
//!
//! Plain data: nothing here knows about sockets or probes, and two [`Latency`] merge with
//! [`Latency::merge`].

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Highest value the histograms hold: one hour in nanoseconds (timeouts are capped below it).
pub const MAX_NS: u64 = 3_600_000_000_000;

/// How many values a compact distribution keeps as they are before it makes its histogram.
/// One of a thousand targets probed ten times a second records ten a second: each period's
/// round trips then take a few hundred bytes, not a histogram of kilobytes made and dropped
/// every second.
const FEW: usize = 64;

/// A distribution of durations, in nanoseconds.
#[derive(Clone)]
pub struct Latency {
    values: Values,
    count: u64,
    mean: f64,
    /// Sum of squared deviations from the mean (Welford).
    m2: f64,
    min: u64,
    max: u64,
    /// Values above [`MAX_NS`], counted rather than silently clamped.
    out_of_range: u64,
    /// A compact distribution's shape (see [`Latency::compact`]); `None`: three digits over
    /// the whole hour.
    compact: Option<Compact>,
}

/// Where a distribution's values are.
#[derive(Clone)]
enum Values {
    /// A compact distribution that has recorded nothing yet.
    None,
    /// A compact distribution's first values, up to [`FEW`], exact.
    Few(Vec<u64>),
    /// Boxed: a target of ten thousand carries three distributions, most never used.
    Histogram(Box<Histogram<u64>>),
}

/// How a compact distribution is kept: its histogram, made at the first value, has room up to
/// `reserve_ns` (and grows beyond as values come), to `digits` significant digits (1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compact {
    pub reserve_ns: u64,
    pub digits: u8,
}

impl Compact {
    /// Two digits, room made as values come.
    pub const GROWING: Compact = Compact {
        reserve_ns: 0,
        digits: 2,
    };

    /// An empty histogram of this shape.
    fn histogram(self) -> Histogram<u64> {
        let high = self.reserve_ns.clamp(512, MAX_NS);
        let digits = self.digits.clamp(1, 2);
        let mut histogram = Histogram::new_with_bounds(256, high, digits).expect("valid bounds");
        histogram.auto(true);
        histogram
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // 1 ns resolution, 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, MAX_NS, 3).expect("static bounds are valid");
        Self::empty(Values::Histogram(Box::new(histogram)), None)
    }

    /// Nothing recorded yet, in `values` (a compact one's made as values come).
    fn empty(values: Values, compact: Option<Compact>) -> Self {
        Self {
            values,
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: u64::MAX,
            max: 0,
            out_of_range: 0,
            compact,
        }
    }

    /// A distribution for one of many targets: its first 64 values kept exact, then
    /// percentiles to two significant digits (1%, and 256 ns below 64 us) in a histogram grown
    /// only as far as the largest value recorded (2 KiB, and 1 KiB more per doubling), where
    /// [`Latency::new`]'s three digits over the whole hour take about 260 KiB. Min, max and mean
    /// stay exact.
    pub fn compact() -> Self {
        Self::compact_as(Compact::GROWING)
    }

    /// As [`Latency::compact`], shaped as `shape` says. With room up to the largest value to
    /// come, a distribution that lives long keeps one size (16 KiB up to 1 s at two digits,
    /// 2 KiB at one), rather than growing whenever a larger value comes.
    pub fn compact_as(shape: Compact) -> Self {
        Self::empty(Values::None, Some(shape))
    }

    /// An empty distribution of the same precision as this one.
    pub fn empty_like(&self) -> Self {
        match self.compact {
            Some(shape) => Self::compact_as(shape),
            None => Self::new(),
        }
    }

    #[inline]
    pub fn record(&mut self, ns: u64) {
        if ns > MAX_NS || !self.hold(ns) {
            self.out_of_range += 1;
            return;
        }
        self.count += 1;
        let delta = ns as f64 - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (ns as f64 - self.mean);
        self.min = self.min.min(ns);
        self.max = self.max.max(ns);
    }

    /// Keeps `ns` where the values are (a compact distribution's histogram made once it has
    /// more than a few); `false` if out of the histogram's range.
    fn hold(&mut self, ns: u64) -> bool {
        match &mut self.values {
            Values::Histogram(h) => h.record(ns).is_ok(),
            Values::Few(few) if few.len() < FEW => {
                few.push(ns);
                true
            }
            Values::None => {
                self.values = Values::Few(Vec::with_capacity(FEW));
                self.hold(ns)
            }
            Values::Few(_) => {
                self.values = Values::Histogram(Box::new(self.made_histogram()));
                self.hold(ns)
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The values in a histogram: the distribution's own, or one made of its few values.
    pub fn histogram(&self) -> Cow<'_, Histogram<u64>> {
        match &self.values {
            Values::Histogram(h) => Cow::Borrowed(h),
            Values::None | Values::Few(_) => Cow::Owned(self.made_histogram()),
        }
    }

    /// A histogram of this one's shape holding its few values (none for a full one).
    fn made_histogram(&self) -> Histogram<u64> {
        let mut histogram = self.compact.unwrap_or(Compact::GROWING).histogram();
        if let Values::Few(few) = &self.values {
            for &ns in few {
                histogram.record(ns).expect("a compact histogram grows");
            }
        }
        histogram
    }

    /// The sum of the values recorded, ns.
    pub fn sum_ns(&self) -> f64 {
        self.mean * self.count as f64
    }

    /// How many values recorded are at or below `ns` (to the histogram's precision: a value
    /// within 0.1% of `ns` may fall on either side).
    pub fn count_at_or_below(&self, ns: u64) -> u64 {
        match &self.values {
            _ if self.count == 0 => 0,
            Values::Few(few) => few.iter().filter(|&&v| v <= ns).count() as u64,
            _ => self.histogram().count_between(0, ns.min(MAX_NS)),
        }
    }

    /// Adds `other`'s samples to this one (Chan et al.'s parallel variance).
    pub fn merge(&mut self, other: &Latency) {
        if other.count == 0 {
            self.out_of_range += other.out_of_range;
            return;
        }
        match &other.values {
            Values::Few(few) => {
                for &ns in few {
                    assert!(
                        self.hold(ns),
                        "a full histogram holds any; a compact one grows"
                    );
                }
            }
            _ => {
                if !matches!(self.values, Values::Histogram(_)) {
                    self.values = Values::Histogram(Box::new(self.made_histogram()));
                }
                let Values::Histogram(h) = &mut self.values else {
                    unreachable!("made just above")
                };
                h.add(other.histogram().as_ref())
                    .expect("a full histogram holds any; a compact one grows");
            }
        }
        let n = self.count + other.count;
        let delta = other.mean - self.mean;
        self.mean += delta * other.count as f64 / n as f64;
        self.m2 += other.m2 + delta * delta * self.count as f64 * other.count as f64 / n as f64;
        self.count = n;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.out_of_range += other.out_of_range;
    }

    /// A distribution known only by its histogram (read back from a log): min, max, mean and
    /// standard deviation come from the histogram too, to its precision. Fails when a value is
    /// above [`MAX_NS`].
    pub fn from_histogram(source: &Histogram<u64>) -> Result<Self, String> {
        let mut latency = Latency::new();
        let Values::Histogram(h) = &mut latency.values else {
            unreachable!("a full distribution has its histogram")
        };
        h.add(source)
            .map_err(|e| format!("values out of range ({e:?})"))?;
        let (count, mean, stdev, min, max) = (h.len(), h.mean(), h.stdev(), h.min(), h.max());
        latency.count = count;
        if count > 0 {
            latency.mean = mean;
            latency.m2 = stdev.powi(2) * count as f64;
            latency.min = min;
            latency.max = max;
        }
        Ok(latency)
    }

    /// The summary, or `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.count == 0 {
            return None;
        }
        let us = |ns: f64| ns / 1_000.0;
        let sorted = match &self.values {
            Values::Few(few) => {
                let mut sorted = few.clone();
                sorted.sort_unstable();
                Some(sorted)
            }
            _ => None,
        };
        // A histogram value stands for its whole bucket; clamp it to the exact extremes so that
        // no percentile reads above the maximum or below the minimum. Few values are exact: the
        // one of rank ceil(q n).
        let q = |quantile: f64| {
            let ns = match &sorted {
                Some(sorted) => {
                    let rank = (quantile * sorted.len() as f64).ceil() as usize;
                    sorted[rank.clamp(1, sorted.len()) - 1]
                }
                None => self.histogram().value_at_quantile(quantile),
            };
            us(ns.clamp(self.min, self.max) as f64)
        };
        let variance = if self.count > 1 {
            self.m2 / (self.count - 1) as f64
        } else {
            0.0
        };
        Some(LatencySummary {
            count: self.count,
            min_us: us(self.min as f64),
            mean_us: us(self.mean),
            stddev_us: us(variance.sqrt()),
            max_us: us(self.max as f64),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            out_of_range: self.out_of_range,
        })
    }
}

/// The distributions behind a ping summary, kept so that flows merge exactly.
#[derive(Clone, Default)]
pub struct PingDistributions {
    /// Round-trip times of received probes.
    pub rtt: Latency,
    /// Fixed rate: from each probe's intended send time to its reply.
    pub rtt_from_intended: Latency,
    /// Fixed rate: how late each probe left compared with its slot.
    pub schedule_lag: Latency,
    /// STAMP runs: what the reflector's timestamps split the round trip into.
    pub one_way: Option<Box<super::stamp::OneWayDistributions>>,
    /// The IP headers replies came back with, where read.
    pub reply_headers: Option<Box<super::summary::HeaderTally>>,
}

impl PingDistributions {
    /// The distributions of one pinger target: compact ones (see [`Latency::compact`]) where it
    /// is one of many; STAMP's split where `one_way`, the replies' headers where `headers`.
    /// The round trips of a compact target are kept as `compact` says (room up to the timeout,
    /// no round trip being longer, so that their size does not change over the run).
    pub fn for_target(compact: Option<Compact>, one_way: bool, headers: bool) -> Self {
        let latency = || match compact {
            Some(_) => Latency::compact(),
            None => Latency::new(),
        };
        let split = || match compact {
            Some(_) => super::stamp::OneWayDistributions::compact(),
            None => super::stamp::OneWayDistributions::default(),
        };
        Self {
            rtt: compact.map_or_else(Latency::new, Latency::compact_as),
            rtt_from_intended: latency(),
            schedule_lag: latency(),
            one_way: one_way.then(|| Box::new(split())),
            reply_headers: headers.then(Default::default),
        }
    }

    pub fn merge(&mut self, other: &PingDistributions) {
        self.rtt.merge(&other.rtt);
        self.rtt_from_intended.merge(&other.rtt_from_intended);
        self.schedule_lag.merge(&other.schedule_lag);
        self.merge_beside_round_trips(other);
    }

    /// Adds `other`'s STAMP split and reply headers, leaving the round-trip distributions (a
    /// pinger of many targets keeps those for all of them at once).
    pub fn merge_beside_round_trips(&mut self, other: &PingDistributions) {
        if let Some(theirs) = &other.one_way {
            self.one_way
                .get_or_insert_with(Default::default)
                .merge(theirs);
        }
        if let Some(theirs) = &other.reply_headers {
            self.reply_headers
                .get_or_insert_with(Default::default)
                .merge(theirs);
        }
    }
}

/// What a [`Latency`] reports. Percentiles come from the histogram (3 significant digits); min,
/// max, mean and standard deviation are exact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub stddev_us: f64,
    pub max_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Samples above the histogram's range (one hour), left out of every figure above.
    pub out_of_range: u64,
}

/// Interarrival jitter as RFC 3550 §6.4.1 defines it, applied to round-trip times in arrival
/// order: `J += (|D| - J) / 16`, where `D` is the difference between consecutive RTTs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jitter {
    last_ns: Option<u64>,
    jitter_ns: f64,
}

impl Jitter {
    pub fn record(&mut self, rtt_ns: u64) {
        if let Some(last) = self.last_ns {
            let d = (rtt_ns as f64 - last as f64).abs();
            self.jitter_ns += (d - self.jitter_ns) / 16.0;
        }
        self.last_ns = Some(rtt_ns);
    }

    /// Jitter in microseconds, once two samples have been seen.
    pub fn us(&self) -> Option<f64> {
        self.last_ns.map(|_| self.jitter_ns / 1_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_moments_and_histogram_percentiles() {
        let mut l = Latency::new();
        for us in 1..=1000u64 {
            l.record(us * 1_000);
        }
        let s = l.summary().unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1.0);
        assert_eq!(s.max_us, 1000.0);
        assert!((s.mean_us - 500.5).abs() < 1e-9);
        // Sample stddev of 1..=1000 is sqrt(1000*1001/12) = 288.819...
        assert!((s.stddev_us - 288.8194).abs() < 1e-3, "{}", s.stddev_us);
        // Three significant digits: within 0.1% of the true percentile.
        assert!((s.p50_us - 500.0).abs() <= 0.5, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() <= 1.0, "{}", s.p99_us);
        assert!((s.p999_us - 999.0).abs() <= 1.0, "{}", s.p999_us);
    }

    #[test]
    fn percentiles_never_leave_the_exact_range() {
        let mut l = Latency::new();
        l.record(18_659);
        l.record(11_682);
        let s = l.summary().unwrap();
        for p in [s.p50_us, s.p90_us, s.p99_us, s.p999_us] {
            assert!(p >= s.min_us && p <= s.max_us, "{p} outside {s:?}");
        }
        assert_eq!(s.p999_us, 18.659);
    }

    #[test]
    fn empty_has_no_summary() {
        assert!(Latency::new().summary().is_none());
    }

    #[test]
    fn out_of_range_is_counted_not_clamped() {
        let mut l = Latency::new();
        l.record(5_000);
        l.record(MAX_NS * 2);
        let s = l.summary().unwrap();
        assert_eq!(s.count, 1);
        assert_eq!(s.out_of_range, 1);
        assert_eq!(s.max_us, 5.0);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Latency::new(), Latency::new(), Latency::new());
        for v in [3_000u64, 7_000, 11_000, 50_000] {
            a.record(v);
            all.record(v);
        }
        for v in [1_000u64, 2_000, 90_000] {
            b.record(v);
            all.record(v);
        }
        a.merge(&b);
        let (m, w) = (a.summary().unwrap(), all.summary().unwrap());
        assert_eq!(m.count, w.count);
        assert_eq!(m.p50_us, w.p50_us);
        assert_eq!((m.min_us, m.max_us), (w.min_us, w.max_us));
        assert!((m.mean_us - w.mean_us).abs() < 1e-9);
        assert!((m.stddev_us - w.stddev_us).abs() < 1e-9);
    }

    #[test]
    fn a_compact_distribution_keeps_its_first_values_exact() {
        let mut l = Latency::compact();
        for ns in [30_100u64, 30_200, 99_999, 30_300] {
            l.record(ns);
        }
        let s = l.summary().unwrap();
        // Exact, where two digits would read 99 999 as its bucket's top.
        assert_eq!((s.p50_us, s.p90_us, s.max_us), (30.2, 99.999, 99.999));
        assert_eq!(l.count_at_or_below(30_200), 2);
        assert_eq!(l.histogram().len(), 4);
        let mut full = Latency::new();
        full.merge(&l);
        assert_eq!(full.count_at_or_below(30_300), 3);
        assert_eq!(full.summary().unwrap().count, 4);
    }

    #[test]
    fn a_compact_distribution_past_its_few_values_agrees_with_a_full_one() {
        let (mut compact, mut full) = (Latency::compact(), Latency::new());
        let (mut a, mut b) = (Latency::compact(), Latency::compact());
        for i in 0..(3 * FEW as u64) {
            let ns = 20_000 + i * 997;
            compact.record(ns);
            full.record(ns);
            // Merged: few values into many, and many into few.
            if i % 5 == 0 {
                a.record(ns)
            } else {
                b.record(ns)
            }
        }
        a.merge(&b);
        for l in [&compact, &a] {
            let (c, f) = (l.summary().unwrap(), full.summary().unwrap());
            assert_eq!((c.count, c.min_us, c.max_us), (f.count, f.min_us, f.max_us));
            assert!((c.mean_us - f.mean_us).abs() < 1e-9);
            // Two significant digits: within 1%.
            assert!(
                (c.p50_us - f.p50_us).abs() <= f.p50_us / 100.0,
                "{c:?} {f:?}"
            );
            assert!(
                (c.p99_us - f.p99_us).abs() <= f.p99_us / 100.0,
                "{c:?} {f:?}"
            );
        }
    }

    #[test]
    fn jitter_follows_rfc3550_recurrence() {
        let mut j = Jitter::default();
        assert_eq!(j.us(), None);
        j.record(100_000);
        assert_eq!(j.us(), Some(0.0));
        j.record(116_000); // |D| = 16 us -> J = 1 us
        assert!((j.us().unwrap() - 1.0).abs() < 1e-12);
        j.record(116_000); // |D| = 0 -> J = 1 - 1/16
        assert!((j.us().unwrap() - 0.9375).abs() < 1e-12);
    }

    #[test]
    fn constant_rtt_has_zero_jitter() {
        let mut j = Jitter::default();
        for _ in 0..100 {
            j.record(42_000);
        }
        assert_eq!(j.us(), Some(0.0));
    }
}
