//! Sending: what the schedule says is due, encoded and sent in batches, each outcome booked in
//! sequence order (sent, or not sent and why).

use super::{Phase, Pinger, TICK_NS};
use crate::config::Pace;
use crate::engine::Wake;
use crate::error::Error;
use crate::model::ProbeEvent;
use crate::roles::socket;
use crate::sys::SendBatch;
use crate::wire::Probe;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Most probes sent in one go before the loop looks at its sockets again.
const MAX_BURST: u32 = 256;
/// Probes per `sendmmsg`.
pub(super) const SEND_BATCH: usize = 32;

impl Pinger<'_> {
    /// When probe number `index` is due, ns since the epoch.
    fn intended_ns(&self, index: u64, now_ns: u64) -> u64 {
        match self.cfg.pace {
            Pace::Rate(rate) => (index as f64 * 1e9 / rate) as u64,
            Pace::Window => now_ns,
        }
    }

    /// Whether the count or duration is used up for probe `index`, due at `intended_ns`.
    fn limit_reached(&self, index: u64, intended_ns: u64) -> bool {
        self.cfg.count.is_some_and(|n| index >= n)
            || self
                .cfg
                .duration
                .is_some_and(|d| intended_ns >= d.as_nanos() as u64)
    }

    /// Sends what the schedule says is due, in batches of one `sendmmsg`; returns when to come
    /// back.
    pub(super) fn send_due(&mut self, now: Instant) -> Result<Wake, Error> {
        let now_ns = self.ns(now);
        let mut batch = self.send_batch.take().expect("send slots present");
        let mut intended = std::mem::take(&mut self.intended);
        let mut wake = Wake::exactly(now);
        let mut result = Ok(());
        for _ in 0..MAX_BURST {
            let index = self.table.next_seq() + intended.len() as u64;
            let intended_ns = self.intended_ns(index, now_ns);
            let stop = if self.limit_reached(index, intended_ns) {
                self.phase = Phase::Draining;
                self.send_end_ns = Some(intended_ns.min(now_ns));
                Some(Wake::IDLE)
            } else if intended_ns > now_ns {
                Some(Wake::exactly(
                    self.epoch + Duration::from_nanos(intended_ns),
                ))
            } else if self.write_blocked {
                // WRITABLE will wake us; check again soon in case the edge was missed.
                Some(Wake::around(now + Duration::from_millis(1)))
            } else if self.table.in_flight() + intended.len() >= self.inflight_max
                || !self.table.make_room_for(intended.len() as u64 + 1)
            {
                // A reply or a timeout frees room; in closed-loop mode mind the duration too.
                Some(match (self.cfg.pace, self.cfg.duration) {
                    (Pace::Window, Some(d)) => Wake::around(self.epoch + d),
                    _ => Wake::IDLE,
                })
            } else {
                None
            };
            if let Some(stop) = stop {
                wake = stop;
                break;
            }
            batch
                .push()
                .expect("batch has room")
                .copy_from_slice(&self.probe);
            intended.push(intended_ns);
            if intended.len() == batch.capacity() {
                result = self.flush(&mut batch, &mut intended);
                if result.is_err() || self.write_blocked {
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.flush(&mut batch, &mut intended);
        }
        self.send_batch = Some(batch);
        self.intended = intended;
        result.map(|()| wake)
    }

    /// Stamps and sends the collected probes, then books each outcome in sequence order. A probe
    /// refused because of an earlier ICMP error is retried once; a full buffer stops the burst,
    /// and the probes after it are not sent (their sequence numbers are not used up).
    fn flush(&mut self, batch: &mut SendBatch, intended: &mut Vec<u64>) -> Result<(), Error> {
        let k = intended.len();
        if k == 0 {
            return Ok(());
        }
        let first = self.table.next_seq();
        let sent_ns = self.ns(Instant::now());
        for j in 0..k {
            self.encode(batch.slot_mut(j), first + j as u64, sent_ns);
        }
        let mut j = 0;
        while j < k {
            let mut refused = false;
            let outcome = match batch.send(&self.socket, j) {
                Ok(n) if n > 0 => {
                    for (t, &intended_ns) in intended.iter().enumerate().skip(j).take(n) {
                        self.record_sent(first + t as u64, sent_ns, intended_ns);
                    }
                    j += n;
                    continue;
                }
                Ok(_) => Err(io::Error::from(io::ErrorKind::WouldBlock)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // An ICMP error for an earlier probe surfaces on this send; once reported it is
                // cleared, so one retry sends this probe.
                Err(e) if socket::is_unreachable(&e) && self.ever_sent => {
                    refused = true;
                    self.socket
                        .send_to(batch.slot(j), self.cfg.target)
                        .map(|_| ())
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => self.record_sent(first + j as u64, sent_ns, intended[j]),
                Err(e) if !self.ever_sent && !self.passing_refusal(&e) => {
                    // The very first probe could not leave: the address or route is wrong.
                    intended.clear();
                    batch.clear();
                    return Err(Error::io("send to", self.cfg.target, e));
                }
                Err(e) => {
                    self.record_failed(first + j as u64, sent_ns, intended[j], &e, refused);
                    if self.write_blocked {
                        // The probes after this one were not used up: they go out once the
                        // socket is writable again, even if the schedule just ran out.
                        if j + 1 < k && self.phase == Phase::Draining {
                            self.phase = Phase::Sending;
                            self.send_end_ns = None;
                        }
                        break;
                    }
                }
            }
            j += 1;
        }
        intended.clear();
        batch.clear();
        if let Some(progress) = &self.progress {
            progress.store(
                self.counters.sent + self.counters.not_sent,
                Ordering::Relaxed,
            );
        }
        Ok(())
    }

    /// A send error that concerns this probe only, not the target: our own buffer full, or
    /// (with `--df`) a probe too big for the path.
    fn passing_refusal(&self, e: &io::Error) -> bool {
        socket::is_local_congestion(e) || (self.too_big.is_some() && socket::is_too_big(e))
    }

    fn encode(&self, buf: &mut [u8], seq: u64, sent_ns: u64) {
        let probe = Probe {
            session: self.session,
            seq,
            send_ns: sent_ns,
            epoch_wall: self.epoch_wall,
            clock: self.clock,
        };
        self.cfg.wire.encode(buf, &probe, self.cfg.key.as_ref());
    }

    fn record_sent(&mut self, seq: u64, sent_ns: u64, intended_ns: u64) {
        // A refusal met on the way is also on the error queue, which names its probe.
        let pushed = self.table.push(sent_ns, intended_ns, true);
        debug_assert_eq!(pushed, seq);
        let deadline = (sent_ns + self.timeout_ns).div_ceil(TICK_NS);
        self.timeouts.insert(deadline, seq);
        self.counters.sent += 1;
        self.ever_sent = true;
        self.peak_in_flight = self.peak_in_flight.max(self.table.in_flight());
        if matches!(self.cfg.pace, Pace::Rate(_)) {
            self.dist
                .schedule_lag
                .record(sent_ns.saturating_sub(intended_ns));
        }
    }

    fn record_failed(
        &mut self,
        seq: u64,
        sent_ns: u64,
        intended_ns: u64,
        e: &io::Error,
        refused: bool,
    ) {
        let pushed = self.table.push(sent_ns, intended_ns, false);
        debug_assert_eq!(pushed, seq);
        if refused || socket::is_unreachable(e) {
            self.table.mark_unreachable(seq);
        }
        self.write_blocked = e.kind() == io::ErrorKind::WouldBlock;
        self.counters.not_sent += 1;
        let too_big = socket::is_too_big(e) && self.too_big.is_some();
        if too_big {
            // The kernel queued the MTU beside the refusal.
            self.drain_icmp();
        }
        if let Some(t) = self.too_big.as_mut().filter(|_| too_big) {
            t.not_sent += 1;
        }
        if self.observer.is_some() {
            let error = match self.too_big.filter(|_| too_big) {
                Some(t) => t.reason(self.cfg.size),
                None => e.to_string(),
            };
            self.emit(ProbeEvent::NotSent {
                seq,
                intended_ns,
                sent_ns,
                error,
            });
        }
    }
}
