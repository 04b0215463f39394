//! How the engine drives the pinger ([`Role`]): registration, readiness, the turns of the loop
//! (sends due, timeouts, intervals), waiting in reads, and stopping.

use super::{clock, Phase, Pinger, TICK_NS};
use crate::engine::{Role, Waited, Wake};
use crate::error::Error;
use mio::event::Event;
use mio::{Interest, Registry, Token};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

impl Role for Pinger<'_> {
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        registry.register(&mut self.socket, first, Interest::READABLE)?;
        // Without a handle to re-register with, a blocked send polls for room instead.
        self.registration = registry.try_clone().ok().map(|r| (r, first));
        Ok(())
    }

    fn ready(&mut self, _index: usize, event: &Event) -> Result<(), Error> {
        if event.is_error() {
            // Read at the next turn, after the other roles' events: the kernel stamps a probe
            // within the send call, so its time is queued before an echo sharing this loop
            // answers, and reading it first would put that read inside the round trip.
            self.error_queue_ready = true;
        }
        if event.is_writable() {
            self.write_blocked = false;
            self.watch_writable(false);
        }
        if event.is_readable() || event.is_error() {
            self.receive(false)?;
        }
        Ok(())
    }

    fn reads_directly(&self) -> bool {
        true
    }

    fn register_spinning(&mut self, _: &Registry, _: Token) -> io::Result<()> {
        // Nothing: `poll_sockets` reads the socket on every turn, and looks for what epoll
        // would have said.
        self.spinning = Some(0);
        Ok(())
    }

    fn poll_sockets(&mut self) -> Result<bool, Error> {
        if let Some(batch) = self.batch.as_mut() {
            batch.set_adaptive(true);
        }
        if self.phase == Phase::Done {
            return Ok(false);
        }
        let received = self.receive(false)? > 0;
        Ok(self.poll_unregistered() || received)
    }

    fn wait_in_reads(&mut self, cap: Option<Duration>) -> bool {
        self.sends_in_reads = crate::sys::wait_in_reads(&self.socket, cap).is_ok();
        self.sends_in_reads
    }

    fn before_poll(&mut self) -> Result<(), Error> {
        if self.held() {
            self.send_held()?;
        }
        Ok(())
    }

    fn watch(&mut self, registry: &Registry, first: Token, on: bool) -> io::Result<()> {
        if !on {
            registry.deregister(&mut self.socket)?;
            self.in_epoll = false;
            self.watching_writable = false;
            return Ok(());
        }
        let interest = match self.write_blocked {
            true => Interest::READABLE | Interest::WRITABLE,
            false => Interest::READABLE,
        };
        registry.register(&mut self.socket, first, interest)?;
        self.in_epoll = true;
        self.watching_writable = self.write_blocked;
        Ok(())
    }

    fn read_waiting(&mut self) -> Result<Waited, Error> {
        if self.phase == Phase::Done || self.write_blocked {
            // Nothing to read for, or room to send to wait for (epoll says when).
            return Ok(Waited::NotNow);
        }
        // A window of one is a ping-pong: one reply a read.
        let lone = self.window() == 1;
        if self.held() && !self.send_held()? {
            // Not sent (booked so): `advance` says what next.
            return Ok(Waited::Read { due: true, lone });
        }
        if self.error_queue_ready {
            return Ok(Waited::Read { due: true, lone });
        }
        let received = self.receive(true)?;
        // Nothing came to book it after (or only an error).
        self.book_sent();
        // An ICMP error met on the way is `advance`'s to read.
        Ok(match received > 0 || self.error_queue_ready {
            true => Waited::Read { due: true, lone },
            false => Waited::Nothing,
        })
    }

    fn advance(&mut self, now: Instant) -> Result<Wake, Error> {
        if !self.started {
            self.started = true;
            // The two clocks read together (within 2 us where the thread is not preempted each
            // try): T1 and T4 of STAMP are the epoch's wall time plus monotonic offsets, and a
            // gap here would bias every one-way delay (one way early, the other late).
            let pair = clock::ClockPair::read(true);
            self.epoch = pair.mono.min(now);
            let offset = pair.mono.saturating_duration_since(self.epoch);
            self.epoch_wall = match pair.real {
                Some((before, after)) => before + (after - before) / 2 - offset,
                None => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .saturating_sub(offset),
            };
        }
        if self.phase == Phase::Done {
            return Ok(Wake::IDLE);
        }
        self.book_sent();
        if self.error_queue_ready {
            self.read_error_queue();
        }
        let now_ns = self.ns(now);
        // Timeouts first: a slot is reused only once no queued timeout of its old target is left.
        self.expire(now_ns);
        self.retarget(now_ns);
        self.close_intervals(now_ns, false);
        let send_wake = if self.phase == Phase::Sending {
            self.send_due(now, now_ns)?
        } else {
            Wake::IDLE
        };
        if self.phase == Phase::Draining && self.in_flight() == 0 && !self.held() {
            self.expire(now_ns);
            self.finish(now_ns);
            return Ok(Wake::IDLE);
        }
        // A held probe leaves within microseconds: its timeout is about one from now.
        let held_tick = self
            .held()
            .then(|| (now_ns + self.timeout_ns).div_ceil(TICK_NS));
        let timeout_wake = Wake {
            around: self
                .next_timeout_tick()
                .or(held_tick)
                .map(|tick| self.epoch + Duration::from_nanos(tick * TICK_NS)),
            exactly: None,
        };
        let interval_wake = match self.period() {
            Some((boundary_ns, _)) => Wake::around(self.epoch + Duration::from_nanos(boundary_ns)),
            None => Wake::IDLE,
        };
        Ok(send_wake.min(timeout_wake).min(interval_wake))
    }

    fn stop(&mut self, now: Instant, hard: bool) {
        self.interrupted = true;
        self.book_sent();
        // A probe held for the next read has not left: it stays unsent.
        self.drop_held();
        let now_ns = self.ns(now);
        if self.phase == Phase::Sending {
            self.phase = Phase::Draining;
            self.send_end_ns = Some(now_ns);
        }
        if hard && self.phase != Phase::Done {
            for target in &mut self.targets {
                target.counters.in_flight = target.table.abandon() as u64;
            }
            self.finish(now_ns);
        }
    }

    fn is_client(&self) -> bool {
        true
    }

    fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}
