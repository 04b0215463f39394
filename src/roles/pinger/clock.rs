//! Turning the kernel's stamps (CLOCK_REALTIME) of datagrams received or sent into times on the
//! monotonic clock the pinger measures with: a monotonic read bracketed by two realtime reads,
//! trusted only when tight.

use std::time::{Duration, Instant};

/// Widest bracket of two realtime reads around a monotonic read that is trusted for converting
/// a kernel timestamp (reads take tens of ns; a preemption takes microseconds or more).
const CLOCK_PAIR_SPREAD: Duration = Duration::from_micros(2);

/// A monotonic read bracketed by two realtime reads (`real`: `None` when no tight bracket could
/// be had, the wall clock having stepped or the thread been preempted each time).
pub(super) struct ClockPair {
    pub(super) mono: Instant,
    pub(super) real: Option<(Duration, Duration)>,
}

impl ClockPair {
    /// A monotonic read, bracketed by realtime reads only if `kernel_stamps` need converting.
    pub(super) fn read(kernel_stamps: bool) -> Self {
        let realtime = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
        };
        let mut mono = Instant::now();
        if !kernel_stamps {
            return Self { mono, real: None };
        }
        for _ in 0..3 {
            let before = realtime();
            mono = Instant::now();
            let after = realtime();
            if after
                .checked_sub(before)
                .is_some_and(|spread| spread <= CLOCK_PAIR_SPREAD)
            {
                return Self {
                    mono,
                    real: Some((before, after)),
                };
            }
        }
        Self { mono, real: None }
    }
}

/// The outcome of converting a kernel timestamp with one clock pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paired {
    /// The stamp's time, ns on the monotonic clock.
    At(u64),
    /// The realtime reads were too far apart (preempted): pair again.
    Retry,
    /// The wall clock stepped: use user-space time.
    Unusable,
}

/// Converts a CLOCK_REALTIME kernel stamp (of a datagram received or sent) to the monotonic
/// clock, given a monotonic read `mono_ns` taken between the realtime reads `before` and
/// `after`, which came after the stamp.
pub(super) fn to_monotonic(
    mono_ns: u64,
    before: Duration,
    after: Duration,
    stamp: Duration,
) -> Paired {
    let Some(spread) = after.checked_sub(before) else {
        return Paired::Unusable;
    };
    if spread > CLOCK_PAIR_SPREAD {
        return Paired::Retry;
    }
    match (before + spread / 2).checked_sub(stamp) {
        // Over a second since the stamp means the wall clock stepped.
        Some(ago) if ago < Duration::from_secs(1) => {
            Paired::At(mono_ns.saturating_sub(ago.as_nanos() as u64))
        }
        _ => Paired::Unusable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1_700_000_000);
    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn queueing_delay_comes_off_the_monotonic_read() {
        // Datagram stamped 30 us before the (tight) pairing at monotonic 1 ms.
        let got = to_monotonic(1_000_000, S + us(100), S + us(101), S + us(70));
        assert_eq!(got, Paired::At(1_000_000 - 30_500));
    }

    #[test]
    fn a_preempted_pairing_is_retried_not_trusted() {
        assert_eq!(
            to_monotonic(1_000_000, S, S + us(50), S - us(10)),
            Paired::Retry
        );
    }

    #[test]
    fn clock_steps_make_the_stamp_unusable() {
        // Wall clock stepped back between the reads.
        assert_eq!(to_monotonic(5, S + us(10), S, S), Paired::Unusable);
        // Stamp from the future (clock stepped back since) or from over a second ago.
        assert_eq!(to_monotonic(5, S, S, S + us(10)), Paired::Unusable);
        assert_eq!(
            to_monotonic(5, S, S, S - Duration::from_secs(2)),
            Paired::Unusable
        );
    }
}
