//! One CSV row per probe, streamed to disk as the run goes (never held in memory).
//!
//! Columns: `flow,seq,scheduled_ns,sent_ns,rtt_ns,status` (`flow,target,seq,…` when the run has
//! several targets). Times are ns since the flow's run
//! started; `sent_ns` of an answered probe is the kernel's send time where it came (kernel send
//! times), so that `sent_ns + rtt_ns` is the arrival; `rtt_ns` is empty unless a reply came. `status` is the probe's verdict —
//! `received`, `reordered` (received, after a later probe), `lost`, `unreachable` (lost, with an
//! ICMP error) or `not_sent` — one row per probe, so the probe rows number sent + not sent. A
//! reply after the timeout adds a `late` row for a probe already written `lost`, and extra
//! answers add `duplicate` rows; datagrams that are not probes are not rows.
//!
//! A STAMP run adds `forward_ns,backward_ns,dwell_ns`: the round trip split by the reflector's
//! timestamps (forward and backward are signed: across two clocks an offset can make one
//! negative), empty where the row has no first answer.

use super::Sink;
use crate::model::{ProbeEvent, ReplyKind};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub const HEADER: &str = "flow,seq,scheduled_ns,sent_ns,rtt_ns,status\n";
pub const STAMP_HEADER: &str =
    "flow,seq,scheduled_ns,sent_ns,rtt_ns,status,forward_ns,backward_ns,dwell_ns\n";
/// Rows are collected per flow and written in chunks of about this many bytes.
const CHUNK: usize = 64 * 1024;

/// The file every flow writes to, and the first write error met.
pub struct SharedCsv {
    out: Mutex<(Sink, Option<io::Error>)>,
    /// Rows carry the STAMP columns.
    stamp: bool,
}

impl SharedCsv {
    /// A file whose rows carry the STAMP columns where `stamp`, and a target column where
    /// `targets` (several targets).
    pub fn new(mut out: Sink, stamp: bool, targets: bool) -> Arc<Self> {
        let header = if stamp { STAMP_HEADER } else { HEADER };
        let header = match targets {
            true => header.replacen("flow,", "flow,target,", 1),
            false => header.to_string(),
        };
        let error = out.write_all(header.as_bytes()).err();
        Arc::new(Self {
            out: Mutex::new((out, error)),
            stamp,
        })
    }

    fn append(&self, chunk: &[u8]) {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (out, error) = &mut *guard;
        if error.is_none() {
            *error = out.write_all(chunk).err();
        }
    }

    /// Flushes the file; returns the first error met while writing it.
    pub fn finish(&self) -> io::Result<()> {
        let mut guard = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let (out, error) = &mut *guard;
        match error.take() {
            Some(e) => Err(e),
            None => out.flush(),
        }
    }
}

/// One flow's writer: formats rows into a buffer and hands full chunks to the shared file.
pub struct ProbeRows {
    /// What starts each row: the flow, and the target where the file has the column.
    flow: usize,
    targets: bool,
    buf: Vec<u8>,
    out: Arc<SharedCsv>,
}

impl ProbeRows {
    /// Rows of flow `flow`, with the target column where `targets`.
    pub fn new(flow: usize, targets: bool, out: Arc<SharedCsv>) -> Self {
        Self {
            flow,
            targets,
            buf: Vec::with_capacity(CHUNK + 128),
            out,
        }
    }

    /// Writes the row for `event` of target `target`, if it is about a probe.
    pub fn record(&mut self, target: Option<SocketAddr>, event: &ProbeEvent) {
        let flow = match target.filter(|_| self.targets) {
            Some(addr) => format!("{},{addr}", self.flow),
            None => self.flow.to_string(),
        };
        let _ = match event {
            ProbeEvent::Reply {
                seq,
                intended_ns,
                sent_ns,
                rtt_ns,
                kind,
                split,
                ..
            } => {
                let status = match kind {
                    ReplyKind::Received { reordered: false } => "received",
                    ReplyKind::Received { reordered: true } => "reordered",
                    ReplyKind::Late => "late",
                    ReplyKind::Duplicate => "duplicate",
                };
                let _ = write!(
                    self.buf,
                    "{flow},{seq},{intended_ns},{sent_ns},{rtt_ns},{status}"
                );
                match split {
                    Some(s) if self.out.stamp => writeln!(
                        self.buf,
                        ",{},{},{}",
                        s.forward_ns, s.backward_ns, s.dwell_ns
                    ),
                    _ => self.end_row(),
                }
            }
            ProbeEvent::Lost {
                seq,
                intended_ns,
                sent_ns,
                unreachable,
            } => {
                let status = if *unreachable { "unreachable" } else { "lost" };
                let _ = write!(self.buf, "{flow},{seq},{intended_ns},{sent_ns},,{status}");
                self.end_row()
            }
            ProbeEvent::NotSent {
                seq,
                intended_ns,
                sent_ns,
                ..
            } => {
                let _ = write!(self.buf, "{flow},{seq},{intended_ns},{sent_ns},,not_sent");
                self.end_row()
            }
            ProbeEvent::Mismatched { .. } | ProbeEvent::Foreign { .. } => return,
        };
        if self.buf.len() >= CHUNK {
            self.out.append(&self.buf);
            self.buf.clear();
        }
    }
}

impl ProbeRows {
    /// Ends a row with no split: empty STAMP columns where the file has them.
    fn end_row(&mut self) -> io::Result<()> {
        let tail: &[u8] = if self.out.stamp { b",,,\n" } else { b"\n" };
        self.buf.extend_from_slice(tail);
        Ok(())
    }
}

impl Drop for ProbeRows {
    fn drop(&mut self) {
        self.out.append(&self.buf);
    }
}

/// A probe row read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub flow: usize,
    /// In a run of several targets: the target's address.
    pub target: Option<String>,
    pub seq: u64,
    pub scheduled_ns: u64,
    pub sent_ns: u64,
    pub rtt_ns: Option<u64>,
    pub status: String,
    /// STAMP files: forward and backward delay and dwell, ns, where the row has them.
    pub split: Option<(i64, i64, u64)>,
}

/// Parses one data line; `None` for the header or a malformed line.
pub fn parse_row(line: &str) -> Option<Row> {
    let mut cols = line.trim_end().split(',');
    let flow = cols.next()?.parse().ok()?;
    let mut second = cols.next()?;
    // A run of several targets writes the target (an address, not a number) second.
    let target = match second.parse::<u64>() {
        Ok(_) => None,
        Err(_) => {
            let target = second.to_string();
            second = cols.next()?;
            Some(target)
        }
    };
    let seq = second.parse().ok()?;
    let scheduled_ns = cols.next()?.parse().ok()?;
    let sent_ns = cols.next()?.parse().ok()?;
    let rtt = cols.next()?;
    let rtt_ns = if rtt.is_empty() {
        None
    } else {
        Some(rtt.parse().ok()?)
    };
    let status = cols.next()?.to_string();
    let rest: Vec<&str> = cols.collect();
    let split = match rest[..] {
        [] | ["", "", ""] => None,
        [f, b, d] => Some((f.parse().ok()?, b.parse().ok()?, d.parse().ok()?)),
        _ => return None,
    };
    Some(Row {
        flow,
        target,
        seq,
        scheduled_ns,
        sent_ns,
        rtt_ns,
        status,
        split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Vec<u8>>>);

    /// Rows of flow `flow` into a file in memory (`stamp`: with the split's columns; `targets`:
    /// with the target's).
    fn rows_in_memory(
        flow: usize,
        stamp: bool,
        targets: bool,
    ) -> (Memory, Arc<SharedCsv>, ProbeRows) {
        let memory = Memory::default();
        let shared = SharedCsv::new(Box::new(memory.clone()), stamp, targets);
        let rows = ProbeRows::new(flow, targets, shared.clone());
        (memory, shared, rows)
    }

    /// A probe that timed out, not announced by an ICMP error.
    fn lost(seq: u64, intended_ns: u64, sent_ns: u64) -> ProbeEvent {
        ProbeEvent::Lost {
            seq,
            intended_ns,
            sent_ns,
            unreachable: false,
        }
    }

    /// What the file holds once `rows` have been handed over and it is finished.
    fn written(rows: ProbeRows, shared: &SharedCsv, memory: &Memory) -> String {
        drop(rows);
        shared.finish().unwrap();
        String::from_utf8(memory.0.lock().unwrap().clone()).unwrap()
    }
    impl Write for Memory {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_row_per_probe_event_and_they_read_back() {
        let (memory, shared, mut rows) = rows_in_memory(1, false, false);
        rows.record(
            None,
            &ProbeEvent::Reply {
                seq: 0,
                intended_ns: 0,
                sent_ns: 12,
                rtt_ns: 30_000,
                len: 64,
                kind: ReplyKind::Received { reordered: false },
                split: None,
            },
        );
        rows.record(None, &lost(1, 1_000, 1_010));
        rows.record(
            None,
            &ProbeEvent::Foreign {
                from: "127.0.0.1:9".parse().unwrap(),
                len: 3,
            },
        );
        let text = written(rows, &shared, &memory);
        assert_eq!(
            text,
            "flow,seq,scheduled_ns,sent_ns,rtt_ns,status\n1,0,0,12,30000,received\n1,1,1000,1010,,lost\n"
        );
        let row = parse_row("1,1,1000,1010,,lost").unwrap();
        assert_eq!(row.rtt_ns, None);
        assert_eq!(row.status, "lost");
        assert!(parse_row(HEADER).is_none());
    }

    #[test]
    fn stamp_rows_carry_the_split() {
        let (memory, shared, mut rows) = rows_in_memory(0, true, false);
        rows.record(
            None,
            &ProbeEvent::Reply {
                seq: 0,
                intended_ns: 0,
                sent_ns: 1,
                rtt_ns: 900,
                len: 44,
                kind: ReplyKind::Received { reordered: false },
                split: Some(crate::model::stamp::Split {
                    forward_ns: -200,
                    backward_ns: 1_100,
                    dwell_ns: 50,
                }),
            },
        );
        rows.record(None, &lost(1, 10, 11));
        let text = written(rows, &shared, &memory);
        assert_eq!(
            text,
            format!("{STAMP_HEADER}0,0,0,1,900,received,-200,1100,50\n0,1,10,11,,lost,,,\n")
        );
        let rows: Vec<Row> = text.lines().filter_map(parse_row).collect();
        assert_eq!(rows[0].split, Some((-200, 1_100, 50)));
        assert_eq!(rows[1].split, None);
        assert!(parse_row("0,1,10,11,,lost,1,2").is_none(), "two of three");
    }

    #[test]
    fn rows_of_several_targets_name_theirs() {
        let (memory, shared, mut rows) = rows_in_memory(0, false, true);
        rows.record(Some("[::1]:7".parse().unwrap()), &lost(4, 10, 11));
        let text = written(rows, &shared, &memory);
        assert_eq!(
            text,
            "flow,target,seq,scheduled_ns,sent_ns,rtt_ns,status\n0,[::1]:7,4,10,11,,lost\n"
        );
        let row = parse_row(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(row.target.as_deref(), Some("[::1]:7"));
        assert_eq!((row.seq, row.status.as_str()), (4, "lost"));
        assert!(parse_row(text.lines().next().unwrap()).is_none());
    }
}
