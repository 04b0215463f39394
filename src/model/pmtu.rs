//! Path MTU by probing (`sonde ping --pmtu`): the largest datagram that comes back with
//! don't-fragment set. The kernel's own MTU is tried first (it is usually right, and then one
//! size settles it); where the path is smaller than the kernel knows — a black hole that drops
//! big packets without a word — sizes are bisected between what came back and what did not.

use serde::Serialize;

/// What became of the probes of one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// At least one reply came back.
    Back,
    /// Refused as too big: by this host before leaving, or by a router that said so (ICMP);
    /// `mtu` is the path MTU the kernel then reported.
    TooBig { mtu: Option<u32> },
    /// Sent, and nothing came back by the timeout (nor any word why).
    Lost,
}

/// One size tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Step {
    pub size_bytes: usize,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// The search: what has come back and what has not, and which size to try next.
#[derive(Debug, Clone)]
pub struct Search {
    /// IP and UDP header bytes around a probe (28 for IPv4, 48 for IPv6).
    headers: usize,
    smallest: usize,
    largest: usize,
    /// The largest size that came back.
    good: Option<usize>,
    /// The MTU the kernel last reported.
    kernel_mtu: Option<u32>,
    steps: Vec<Step>,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PmtuReport {
    pub target: String,
    /// The largest `--size` (UDP payload) that came back; `None`: not even the smallest did.
    pub largest_size_bytes: Option<usize>,
    /// That size as an IP packet: the path MTU as measured.
    pub path_mtu_bytes: Option<usize>,
    /// The path MTU the kernel reported last (from its route, or a router's ICMP), if it did.
    pub kernel_mtu_bytes: Option<u32>,
    pub probes_per_size: u64,
    pub timeout_ms: f64,
    /// Every size tried, in order.
    pub steps: Vec<Step>,
}

impl Search {
    /// A search over sizes `smallest..=largest` for an IPv4 or IPv6 path.
    pub fn new(smallest: usize, largest: usize, ipv6: bool) -> Self {
        Self {
            headers: if ipv6 { 40 + 8 } else { 20 + 8 },
            smallest,
            largest,
            good: None,
            kernel_mtu: None,
            steps: Vec::new(),
        }
    }

    /// The smallest size known not to come back: one that did not, above the largest that did
    /// (a failure below a success was a chance loss), or one over the kernel's MTU, which it
    /// refuses to send. One past `largest` while there is none.
    fn bad(&self) -> usize {
        let failed = self
            .steps
            .iter()
            .filter(|s| s.outcome != Outcome::Back && self.good.is_none_or(|g| s.size_bytes > g))
            .map(|s| s.size_bytes);
        let refused = self.hint().map(|h| h + 1);
        failed.chain(refused).min().unwrap_or(self.largest + 1)
    }

    /// The largest size that fits the MTU the kernel last reported.
    fn hint(&self) -> Option<usize> {
        self.kernel_mtu
            .map(|mtu| (mtu as usize).saturating_sub(self.headers))
    }

    fn tried(&self, size: usize) -> bool {
        self.steps.iter().any(|s| s.size_bytes == size)
    }

    /// The next size to try; `None` once the answer is known (or nothing comes back).
    pub fn next_size(&self) -> Option<usize> {
        // The largest size asks the kernel for its MTU (or settles it on loopback).
        if self.steps.is_empty() {
            return Some(self.largest);
        }
        let bad = self.bad();
        let open = |size: usize| self.good.is_none_or(|g| size > g) && size < bad;
        if let Some(hint) = self.hint().filter(|&h| open(h) && !self.tried(h)) {
            return Some(hint);
        }
        match self.good {
            None if !self.tried(self.smallest) => Some(self.smallest),
            // Not even the smallest probe came back: the target is not answering.
            None => None,
            Some(good) if bad <= good + 1 => None,
            Some(good) => Some(good + (bad - good) / 2),
        }
    }

    /// Takes the outcome of the probes of `size`.
    pub fn record(&mut self, size: usize, outcome: Outcome) {
        match outcome {
            Outcome::Back => self.good = Some(self.good.map_or(size, |g| g.max(size))),
            Outcome::TooBig { mtu: Some(mtu) } => self.kernel_mtu = Some(mtu),
            Outcome::TooBig { mtu: None } | Outcome::Lost => {}
        }
        self.steps.push(Step {
            size_bytes: size,
            outcome,
        });
    }

    /// What was found, for `target`.
    pub fn report(&self, target: String, probes_per_size: u64, timeout_ms: f64) -> PmtuReport {
        PmtuReport {
            target,
            largest_size_bytes: self.good,
            path_mtu_bytes: self.good.map(|g| g + self.headers),
            kernel_mtu_bytes: self.kernel_mtu,
            probes_per_size,
            timeout_ms,
            steps: self.steps.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a path where sizes up to `fits` come back, the kernel knows of
    /// `kernel_mtu` (bigger sizes are refused locally) and the rest are lost; returns the sizes
    /// tried and the answer.
    fn search(fits: usize, kernel_mtu: Option<u32>) -> (Vec<usize>, Option<usize>) {
        let mut s = Search::new(32, 65_507, false);
        while let Some(size) = s.next_size() {
            let outcome = match kernel_mtu {
                Some(mtu) if size + 28 > mtu as usize => Outcome::TooBig { mtu: Some(mtu) },
                _ if size <= fits => Outcome::Back,
                _ => Outcome::Lost,
            };
            s.record(size, outcome);
            assert!(s.steps.len() < 40, "the search does not end: {:?}", s.steps);
        }
        let r = s.report("t".into(), 3, 1000.0);
        (
            s.steps.iter().map(|t| t.size_bytes).collect(),
            r.largest_size_bytes,
        )
    }

    #[test]
    fn the_kernels_mtu_settles_it_in_two_sizes_when_the_path_agrees() {
        assert_eq!(search(1472, Some(1500)), (vec![65_507, 1472], Some(1472)));
        // Loopback: the largest size comes back at once.
        assert_eq!(search(65_507, None), (vec![65_507], Some(65_507)));
    }

    #[test]
    fn a_black_hole_below_the_kernels_mtu_is_found_by_bisection() {
        let (tried, found) = search(1252, Some(1500));
        assert_eq!(found, Some(1252));
        assert_eq!(&tried[..3], &[65_507, 1472, 32]);
        assert!(tried.len() <= 3 + 11, "{tried:?}");
        // Without any word from the kernel, from the top.
        let (tried, found) = search(1000, None);
        assert_eq!(found, Some(1000));
        assert!(tried.len() <= 2 + 16, "{tried:?}");
    }

    #[test]
    fn nothing_back_even_at_the_smallest_size_ends_without_an_answer() {
        let mut s = Search::new(32, 65_507, true);
        s.record(65_507, Outcome::Lost);
        assert_eq!(s.next_size(), Some(32));
        s.record(32, Outcome::Lost);
        assert_eq!(s.next_size(), None);
        assert_eq!(s.report("t".into(), 3, 1.0).largest_size_bytes, None);
    }

    #[test]
    fn a_chance_loss_below_a_size_that_came_back_does_not_stop_the_search() {
        let mut s = Search::new(32, 2000, false);
        s.record(2000, Outcome::Lost);
        s.record(32, Outcome::Back);
        s.record(1016, Outcome::Lost);
        s.record(524, Outcome::Back);
        s.record(1100, Outcome::Back); // 1016 was a chance loss
        assert!(s.next_size().is_some_and(|n| n > 1100 && n < 2000));
    }
}
