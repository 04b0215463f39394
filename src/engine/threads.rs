//! Running one poll loop per thread, each pinned to a core.
//!
//! Roles are built (and their sockets bound) on the calling thread, so that a bad address fails
//! before any thread starts; each then moves to a thread of its own with its own [`Engine`].
//!
//! [`Engine`]: crate::engine::Engine

use crate::error::Error;
use std::cell::Cell;
use std::sync::Barrier;

/// Which core each of `n` threads runs on: `cpus` in turn if given; else one thread runs where
/// the OS puts it, and several are spread over the machine's cores in turn. `None` where the
/// platform does not say which cores there are.
pub(crate) fn placement(n: usize, cpus: Option<&[usize]>) -> Result<Vec<Option<usize>>, Error> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    match cpus {
        Some(list) => {
            if let Some(bad) = list.iter().find(|c| !available.contains(c)) {
                return Err(Error::config(
                    "--cpus",
                    format!("CPU {bad} is not one of this machine's {available:?}"),
                ));
            }
            Ok((0..n).map(|i| Some(list[i % list.len()])).collect())
        }
        None if available.is_empty() || n == 1 => Ok(vec![None; n]),
        None => Ok((0..n)
            .map(|i| Some(available[i % available.len()]))
            .collect()),
    }
}

/// Runs `work` once per item on its own thread, pinned as `placement` says, and returns the
/// results in order. Each calls its `arrived` argument once it is set up (its signal handlers
/// installed, say); `ready` runs on the calling thread once every one has.
pub(crate) fn run_pinned<I: Send, T: Send>(
    items: Vec<I>,
    placement: &[Option<usize>],
    ready: impl FnOnce(),
    work: impl Fn(I, &dyn Fn()) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(items.len() + 1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .into_iter()
            .zip(placement.iter().copied())
            .map(|(item, core)| {
                let (work, barrier) = (&work, &barrier);
                scope.spawn(move || {
                    pin(core);
                    work(item, &|| {
                        barrier.wait();
                    })
                })
            })
            .collect();
        barrier.wait();
        ready();
        handles
            .into_iter()
            .map(|h| h.join().expect("a measurement thread panicked"))
            .collect()
    })
}

/// Runs `work` on the calling thread, pinned to `core` if given, with `ready` run when it
/// calls its `arrived` argument: for a caller with one loop and nothing else for its thread
/// to do. A second thread, even an idle one, costs every system call on a socket a reference
/// taken and dropped on the shared descriptor table: 0.06-0.13 µs a round trip measured on one
/// CPU here.
pub(crate) fn run_here<I, T>(
    item: I,
    core: Option<usize>,
    ready: impl FnOnce(),
    work: impl FnOnce(I, &dyn Fn()) -> T,
) -> T {
    pin(core);
    let ready = Cell::new(Some(ready));
    work(item, &|| {
        if let Some(ready) = ready.take() {
            ready();
        }
    })
}

fn pin(core: Option<usize>) {
    if let Some(id) = core {
        // Best effort: an unpinned thread still measures correctly.
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
}

/// A list of CPU numbers, as `--cpus` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CpuList(pub Vec<usize>);

/// Parses a CPU list such as `0,2-3`.
pub(crate) fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let usage = "expected CPU numbers such as 0,1 or 0-3";
    let mut cpus = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| usage)?,
                    b.trim().parse().map_err(|_| usage)?,
                );
                if a > b || b - a > 4096 {
                    return Err(usage.into());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.trim().parse().map_err(|_| usage)?),
        }
    }
    Ok(CpuList(cpus))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0"), Ok(CpuList(vec![0])));
        assert_eq!(parse_cpus("0,2-4"), Ok(CpuList(vec![0, 2, 3, 4])));
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("3-1").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn placement_cycles_through_cpus() {
        let p = placement(3, Some(&[0])).unwrap();
        assert_eq!(p, vec![Some(0), Some(0), Some(0)]);
        assert_eq!(
            placement(1, None).unwrap(),
            vec![None],
            "one thread is not pinned unasked"
        );
        assert!(placement(1, Some(&[100_000])).is_err());
    }

    #[test]
    fn results_come_back_in_order() {
        let out = run_pinned(
            vec![1, 2, 3],
            &[None, None, None],
            || {},
            |x, arrived| {
                arrived();
                x * 10
            },
        );
        assert_eq!(out, vec![10, 20, 30]);
    }

    #[test]
    fn here_runs_on_this_thread_and_ready_when_it_arrives() {
        let me = std::thread::current().id();
        let readied = Cell::new(false);
        let out = run_here(
            4,
            None,
            || readied.set(true),
            |x, arrived| {
                assert_eq!(std::thread::current().id(), me);
                assert!(!readied.get(), "ready ran before the work arrived");
                arrived();
                assert!(readied.get());
                x * 10
            },
        );
        assert_eq!(out, 40);
    }
}
