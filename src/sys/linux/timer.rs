//! Waking up on time: a `timerfd` for microsecond deadlines, and a lower timer slack.

use super::cvt;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Keeps glibc's heap from creeping in runs that never end. By default each thread gets its own
/// arena, and memory made on one thread and freed on another (a run's reports, handed from the
/// measurement loop to the thread that follows it) leaves the arenas fragmented (measured: +17%
/// in a minute of 1 000 targets churning, flat with one arena). And glibc raises its mmap
/// threshold each time a large block is freed, so that the large blocks made and freed every
/// second (histograms of reports) end up carved from the heap, which then fragments too
/// (measured: +11% in 90 s with one arena, +3% with the threshold fixed at 64 KiB, all of it in
/// the first 30 s). The loops do not allocate as they go, so they lose nothing to either.
pub(crate) fn steady_malloc() {
    #[cfg(target_env = "gnu")]
    // Safety: mallopt only sets allocator parameters; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
    }
}

/// Lowers this thread's timer slack so that sleeps end when asked (the default slack is
/// 50 µs, as long as a loopback round trip).
pub(crate) fn set_timer_slack(slack: Duration) {
    // Safety: PR_SET_TIMERSLACK takes one unsigned long and touches only this thread.
    unsafe {
        libc::prctl(
            libc::PR_SET_TIMERSLACK,
            slack.as_nanos() as libc::c_ulong,
            0,
            0,
            0,
        );
    }
}

/// A `timerfd` the poll loop sleeps on when it needs to wake up with microsecond precision
/// (epoll's own timeout counts whole milliseconds).
pub(crate) struct PreciseTimer {
    fd: OwnedFd,
}

impl PreciseTimer {
    pub(crate) fn new() -> io::Result<Self> {
        // Safety: plain syscall; on success we own the returned descriptor.
        let fd = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        // Safety: fd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Fires once, `after` from now (a zero duration is raised to 1 ns: zero would disarm).
    pub(crate) fn arm(&mut self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // Safety: fd is our timerfd; spec is a valid itimerspec; old value not requested.
        cvt(unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })?;
        Ok(())
    }

    /// Consumes an expiry so that the next one raises a fresh edge.
    pub(crate) fn acknowledge(&mut self) {
        let mut expirations = 0u64;
        // Safety: reads 8 bytes into a u64 from our non-blocking timerfd; EAGAIN is harmless.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut expirations as *mut u64).cast(),
                8,
            );
        }
    }
}

/// Whether the wall clock is synchronised to an external source, and its estimated error, as
/// the kernel's clock discipline (`adjtimex`) says; `None` where it will not say.
pub(crate) fn clock_quality() -> Option<(bool, Duration)> {
    // Safety: an all-zero timex with modes 0 asks adjtimex to read, not to change, the clock.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // Safety: tx is a valid timex the call writes into.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return None;
    }
    let synchronized = state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    let error_us = u64::try_from(tx.esterror).unwrap_or(0);
    Some((synchronized, Duration::from_micros(error_us.max(1))))
}

/// The wall clock (CLOCK_REALTIME) since the Unix epoch, read directly: `SystemTime::now()`
/// with its conversion costs several times as much, once per answered STAMP packet.
pub(crate) fn wall_clock() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: ts is a valid timespec the call writes into; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
