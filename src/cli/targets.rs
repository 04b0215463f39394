//! The targets of `sonde ping`: those on the command line and those of `--targets FILE`, each
//! with its labels.
//!
//! The file has one target a line, `HOST:PORT` then optional `key=value` labels (`name=` among
//! them), separated by blanks; `#` starts a comment. A bad line is named by file and line.

use super::args::Target;
use super::parse::parse_target;
use crate::error::Error;
use crate::model::target_label;
use crate::wire::stamp::PORT as STAMP_PORT;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

/// One target as asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub(super) target: Target,
    /// `name=`, shown instead of the address.
    pub(super) name: Option<String>,
    /// The other labels, for the metrics and the JSON summary.
    pub(super) labels: BTreeMap<String, String>,
}

impl Entry {
    pub(super) fn plain(target: Target) -> Self {
        Self {
            target,
            name: None,
            labels: BTreeMap::new(),
        }
    }

    /// What the target is called in tables and thresholds: its name, or its address.
    pub(super) fn display(&self, addr: SocketAddr) -> String {
        target_label(self.name.as_deref(), &addr.to_string())
    }

    /// Every label for the metrics, `name` first.
    pub(super) fn metric_labels(&self) -> Vec<(String, String)> {
        let name = self.name.iter().map(|n| ("name".to_string(), n.clone()));
        name.chain(self.labels.clone()).collect()
    }
}

/// The targets' names and labels by address, shared with the threads that print them (a
/// reload replaces them).
#[derive(Debug, Clone, Default)]
pub(super) struct Names(Arc<RwLock<HashMap<SocketAddr, Entry>>>);

impl Names {
    pub(super) fn new(entries: &[Entry]) -> Self {
        let names = Self::default();
        names.set(entries);
        names
    }

    /// Replaces every entry with `entries`.
    pub(super) fn set(&self, entries: &[Entry]) {
        let map = entries.iter().map(|e| (e.target.addr, e.clone())).collect();
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    pub(super) fn entry(&self, addr: SocketAddr) -> Option<Entry> {
        let map = self.0.read().unwrap_or_else(|p| p.into_inner());
        map.get(&addr).cloned()
    }

    /// What target `addr` is called: its name and address, or its address.
    pub(super) fn display(&self, addr: SocketAddr) -> String {
        match self.entry(addr) {
            Some(entry) => entry.display(addr),
            None => addr.to_string(),
        }
    }
}

/// Labels Prometheus would refuse, or that sonde sets itself.
const RESERVED: [&str; 2] = ["target", "le"];

/// The targets of the command line, then of the targets file, each with a port (STAMP's
/// default where `stamp` and none was given).
pub(super) fn entries(
    cli: &[Target],
    file: Option<&str>,
    stamp: bool,
) -> Result<Vec<Entry>, Error> {
    let mut entries: Vec<Entry> = cli.iter().cloned().map(Entry::plain).collect();
    if let Some(path) = file {
        entries.extend(read(path)?);
    }
    if entries.is_empty() {
        return Err(Error::config("--targets", "the file lists no target"));
    }
    for entry in &mut entries {
        if !entry.target.port {
            if !stamp {
                return Err(Error::config(
                    "HOST:PORT",
                    format!(
                        "{}: a port is needed (only --wire stamp has a default, {STAMP_PORT})",
                        entry.target.addr.ip()
                    ),
                ));
            }
            entry.target.addr.set_port(STAMP_PORT);
        }
    }
    Ok(entries)
}

/// Reads `--targets FILE`.
pub(super) fn read(path: &str) -> Result<Vec<Entry>, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::file("--targets", crate::error::FileOp::Read, path, e))?;
    parse(&text).map_err(|(line, reason)| {
        Error::config("--targets", format!("{path}, line {line}: {reason}"))
    })
}

/// The entries of a targets file's text, or the first bad line's number and what is wrong.
fn parse(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let Some(address) = words.next() else {
            continue;
        };
        let target = parse_target(address).map_err(|e| (i + 1, format!("{address}: {e}")))?;
        let mut entry = Entry::plain(target);
        for word in words {
            let (key, value) = label(word).map_err(|e| (i + 1, e))?;
            if key == "name" {
                entry.name = Some(value);
            } else if entry.labels.insert(key.clone(), value).is_some() {
                return Err((i + 1, format!("label {key} given twice")));
            }
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// One `key=value` label, checked against Prometheus's rules for label names.
fn label(word: &str) -> Result<(String, String), String> {
    let (key, value) = word
        .split_once('=')
        .ok_or_else(|| format!("{word}: expected a label, key=value"))?;
    let mut chars = key.chars();
    let well_formed = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !well_formed || key.starts_with("__") {
        return Err(format!(
            "{key}: a label name is letters, digits and _, not starting with a digit or __"
        ));
    }
    if RESERVED.contains(&key) {
        return Err(format!("{key}: sonde sets this label itself"));
    }
    if value.is_empty() {
        return Err(format!("{key}: the value is empty"));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_targets_with_their_names_and_labels() {
        let text = "# the lab\n127.0.0.1:9000 name=web1 site=ams\n\n  127.0.0.2:9000 # bare\n";
        let entries = parse(text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].target.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(entries[0].name.as_deref(), Some("web1"));
        assert_eq!(entries[0].labels["site"], "ams");
        assert_eq!(
            entries[0].metric_labels(),
            vec![
                ("name".to_string(), "web1".to_string()),
                ("site".to_string(), "ams".to_string())
            ]
        );
        assert_eq!(entries[1].name, None);
        assert!(entries[1].labels.is_empty());
    }

    #[test]
    fn a_bad_line_is_named_with_what_is_wrong() {
        let cases = [
            ("127.0.0.1:9000\nnot-an-address:x\n", 2, "not-an-address"),
            ("127.0.0.1:9000 site\n", 1, "expected a label"),
            ("127.0.0.1:9000 9site=x\n", 1, "label name"),
            ("127.0.0.1:9000 __x=1\n", 1, "label name"),
            ("127.0.0.1:9000 target=x\n", 1, "sets this label itself"),
            ("127.0.0.1:9000 a=1 a=2\n", 1, "given twice"),
            ("127.0.0.1:9000 a=\n", 1, "empty"),
        ];
        for (text, line, says) in cases {
            let (at, reason) = parse(text).unwrap_err();
            assert_eq!(at, line, "{text}");
            assert!(reason.contains(says), "{text}: {reason}");
        }
    }
}
