//! Re-reading `--targets FILE` while a run goes on: on SIGHUP, and with `--reload` whenever the
//! file changes. New targets start, removed ones stop and their series leave the metrics; a
//! file that no longer reads keeps the targets there are (said on stderr), as a typo in a file
//! a configuration system writes must not end the watch.

use super::args::Target;
use super::targets::{self, Entry, Names};
use crate::config::check_targets;
use crate::error::Error;
use crate::output::metrics::Exposition;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How often `--reload` looks at the file's modification time.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What a reload reads: the file, the command line's targets (kept on every reload), whether
/// STAMP's port is the default, whether to watch the file (`--reload`) as well as SIGHUP, and
/// whether the pingers' sockets serve both address families (else one, the first target's).
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub path: String,
    pub cli: Vec<Target>,
    pub stamp: bool,
    pub watch: bool,
    pub both_families: bool,
}

/// What a reload reads and where its result goes.
pub(super) struct Reloader {
    source: Source,
    /// Each pinger's channel for its new list, and its targets now.
    flows: Vec<(Sender<Vec<SocketAddr>>, Vec<SocketAddr>)>,
    names: Names,
    exposition: Option<Exposition>,
    hangup: Arc<AtomicBool>,
    modified: Option<SystemTime>,
    looked: Instant,
}

impl Reloader {
    /// Ready to reload: SIGHUP is caught from now on.
    pub(super) fn new(
        source: Source,
        flows: Vec<(Sender<Vec<SocketAddr>>, Vec<SocketAddr>)>,
        names: Names,
        exposition: Option<Exposition>,
    ) -> Result<Self, Error> {
        let hangup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, hangup.clone())
            .map_err(|e| Error::Setup("catch SIGHUP (to reload --targets)", e))?;
        Ok(Self {
            modified: modified(&source.path),
            source,
            flows,
            names,
            exposition,
            hangup,
            looked: Instant::now(),
        })
    }

    /// Reloads if SIGHUP came or (with `--reload`) the file changed.
    pub(super) fn turn(&mut self) {
        let mut due = self.hangup.swap(false, Ordering::Relaxed);
        if self.source.watch && self.looked.elapsed() >= WATCH_EVERY {
            self.looked = Instant::now();
            let now = modified(&self.source.path);
            due |= now != self.modified;
            self.modified = now;
        }
        if !due {
            return;
        }
        // This read covers the change too (SIGHUP often follows an edit).
        self.modified = modified(&self.source.path);
        let kept = self.flows.iter().map(|f| f.1.len()).sum::<usize>();
        let s = &self.source;
        match targets::entries(&s.cli, Some(&s.path), s.stamp).and_then(|e| self.check(e)) {
            Ok(entries) => self.apply(&entries),
            Err(e) => eprintln!("sonde: reload: {e}; keeping the {kept} targets there are"),
        }
    }

    /// The entries, if the running pingers can take them: one address family, each once with a
    /// port (as at the start), one at least for each pinger.
    fn check(&self, entries: Vec<Entry>) -> Result<Vec<Entry>, Error> {
        if entries.len() < self.flows.len() {
            let reason = format!("fewer targets than the {} flows", self.flows.len());
            return Err(Error::config("--targets", reason));
        }
        let ipv4 = self.flows[0].1.first().is_none_or(SocketAddr::is_ipv4);
        for e in &entries {
            let addr = e.target.addr;
            if addr.is_ipv4() != ipv4 && !self.source.both_families {
                let reason = format!("{addr}: not of the running targets' address family");
                return Err(Error::config("--targets", reason));
            }
        }
        check_targets("--targets", entries.iter().map(|e| e.target.addr))?;
        Ok(entries)
    }

    /// Hands each pinger its new list (targets it has stay with it; new ones go to the pinger
    /// with the fewest) and updates the names and the metrics.
    fn apply(&mut self, entries: &[Entry]) {
        let wanted: HashSet<SocketAddr> = entries.iter().map(|e| e.target.addr).collect();
        let mut removed = Vec::new();
        for (_, list) in &mut self.flows {
            removed.extend(list.iter().filter(|a| !wanted.contains(a)).copied());
            list.retain(|a| wanted.contains(a));
        }
        let have: HashSet<SocketAddr> = self.flows.iter().flat_map(|f| f.1.clone()).collect();
        let added: Vec<&Entry> = entries
            .iter()
            .filter(|e| !have.contains(&e.target.addr))
            .collect();
        for entry in &added {
            let fewest = self.flows.iter_mut().min_by_key(|f| f.1.len());
            fewest.expect("a flow").1.push(entry.target.addr);
        }
        // No pinger left without a target: one moves from the pinger with the most.
        while let Some(empty) = self.flows.iter().position(|f| f.1.is_empty()) {
            let most = (0..self.flows.len()).max_by_key(|&i| self.flows[i].1.len());
            let moved = self.flows[most.expect("a flow")]
                .1
                .pop()
                .expect("enough targets");
            self.flows[empty].1.push(moved);
        }
        for (tx, list) in &self.flows {
            // A pinger that has ended takes no more lists.
            let _ = tx.send(list.clone());
        }
        self.names.set(entries);
        if let Some(exposition) = &self.exposition {
            for addr in &removed {
                exposition.remove_target(&addr.to_string());
            }
            for entry in &added {
                let addr = entry.target.addr.to_string();
                exposition.add_target(&addr, &entry.metric_labels());
            }
        }
        eprintln!(
            "sonde: reloaded {}: {} targets ({} new, {} removed)",
            self.source.path,
            entries.len(),
            added.len(),
            removed.len()
        );
    }
}

fn modified(path: &str) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
