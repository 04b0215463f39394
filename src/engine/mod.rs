//! The poll loop: one `mio::Poll` drives every socket role of a thread.
//!
//! The engine knows roles only through [`Role`]: it registers them, hands them readiness events,
//! asks each when it next needs to run, and sleeps until the earliest of those times or the next
//! event. Scheduled sends want microsecond precision, which epoll's millisecond timeout cannot
//! give; those deadlines are slept on with a `timerfd`, and the last few microseconds are spun.

use crate::error::Error;
use crate::sys::{set_timer_slack, PreciseTimer};
use mio::event::Event;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use signals::StopSignals;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod signals;
pub(crate) mod threads;
pub(crate) mod timer;

pub use timer::Wheel;

/// Tokens reserved for each role: role `i` owns `i * TOKENS_PER_ROLE ..`.
pub const TOKENS_PER_ROLE: usize = 1 << 20;
const SIGNAL_TOKEN: Token = Token(usize::MAX);
const TIMER_TOKEN: Token = Token(usize::MAX - 1);
const STOP_TOKEN: Token = Token(usize::MAX - 2);

/// Asks an engine on another thread to stop, as Ctrl-C would (a second call: at once).
#[derive(Clone)]
pub struct StopHandle {
    waker: Arc<Waker>,
    requests: Arc<AtomicUsize>,
}

impl StopHandle {
    pub fn stop(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        // A failed wake leaves the request to be seen at the loop's next turn.
        let _ = self.waker.wake();
    }
}
/// Deadlines closer than this are spun for rather than slept on: a wake-up from sleep costs
/// about as much here.
const SPIN_BELOW: Duration = Duration::from_micros(20);
/// Busy-poll mode reads the sockets directly and asks epoll only every this many turns, for
/// what only it reports: signals, stop requests, writability, queued ICMP errors.
const BUSY_TURNS_PER_POLL: u32 = 64;

/// When a role next needs [`Role::advance`] called, besides on its own socket events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    /// Around this time; a millisecond late is fine (timeouts).
    pub around: Option<Instant>,
    /// At this time, as exactly as the machine allows (scheduled sends).
    pub exactly: Option<Instant>,
}

impl Wake {
    /// Not for time's sake: only when a socket is ready.
    pub const IDLE: Wake = Wake {
        around: None,
        exactly: None,
    };

    pub fn around(t: Instant) -> Self {
        Wake {
            around: Some(t),
            exactly: None,
        }
    }

    pub fn exactly(t: Instant) -> Self {
        Wake {
            around: None,
            exactly: Some(t),
        }
    }

    /// Whether either deadline has come.
    fn reached(&self, now: Instant) -> bool {
        self.around.is_some_and(|t| t <= now) || self.exactly.is_some_and(|t| t <= now)
    }

    /// The earlier of each kind of deadline.
    pub fn min(self, other: Wake) -> Wake {
        fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Wake {
            around: earlier(self.around, other.around),
            exactly: earlier(self.exactly, other.exactly),
        }
    }
}

/// A socket role the engine drives (echo, pinger, relay, or one of your own): the whole of what
/// the engine knows about it.
pub trait Role {
    /// Registers the role's sources with tokens from `first` on (at most [`TOKENS_PER_ROLE`]).
    fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()>;
    /// The source registered as `first + index` is ready.
    fn ready(&mut self, index: usize, event: &Event) -> Result<(), Error>;
    /// Does the work that is due at `now` and says when to be called again.
    fn advance(&mut self, now: Instant) -> Result<Wake, Error>;
    /// Busy-poll mode: reads the role's sockets without waiting to hear they are readable; says
    /// whether anything came in (so that [`Role::advance`] runs). Only called when
    /// [`Role::reads_directly`] says so.
    fn poll_sockets(&mut self) -> Result<bool, Error> {
        Ok(false)
    }
    /// Whether [`Role::poll_sockets`] reads the role's sockets; a busy loop with any role that
    /// does not asks epoll on every turn instead.
    fn reads_directly(&self) -> bool {
        false
    }
    /// Instead of [`Role::register`], in a busy loop whose roles all read directly: the loop
    /// calls [`Role::poll_sockets`] on every turn and asks epoll only now and then, so a role
    /// registers only what polling does not see (and polls for the rest). A socket in an epoll
    /// set costs every datagram sent to it a wake-up call in the sender's path: on loopback
    /// here about a quarter of a microsecond of each one-way trip, which spinning does not need.
    fn register_spinning(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
        self.register(registry, first)
    }
    /// A stop was asked for (Ctrl-C): finish gracefully, or at once when `hard`.
    fn stop(&mut self, now: Instant, hard: bool);
    /// Clients have a finite job; the loop runs until every client is done. Services (echo) run
    /// until stopped, and end with the clients when there are any.
    fn is_client(&self) -> bool;
    fn is_done(&self) -> bool;
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunEnd {
    /// Stop requests (signals) received: 0 when the roles finished on their own.
    pub stop_requests: usize,
}

/// One thread's poll loop.
pub struct Engine {
    poll: Poll,
    events: Events,
    timer: Option<PreciseTimer>,
    signals: Option<StopSignals>,
    stop_requests: Option<Arc<AtomicUsize>>,
    busy_poll: bool,
}

impl Engine {
    pub fn new() -> Result<Self, Error> {
        let poll = Poll::new().map_err(|e| Error::Setup("create poll", e))?;
        // A timerfd is a refinement; without one the loop spins near deadlines instead.
        let timer = PreciseTimer::new().ok().and_then(|mut t| {
            t.register(poll.registry(), TIMER_TOKEN).ok()?;
            Some(t)
        });
        set_timer_slack(Duration::from_micros(1));
        Ok(Self {
            poll,
            events: Events::with_capacity(256),
            timer,
            signals: None,
            stop_requests: None,
            busy_poll: false,
        })
    }

    /// Turns SIGINT and SIGTERM into stop requests for this engine's roles (until it is dropped).
    pub fn stop_on_signals(&mut self) -> Result<(), Error> {
        let mut signals =
            StopSignals::install().map_err(|e| Error::Setup("install signal handlers", e))?;
        self.poll
            .registry()
            .register(&mut signals.reader, SIGNAL_TOKEN, Interest::READABLE)
            .map_err(|e| Error::Setup("register signal pipe", e))?;
        self.signals = Some(signals);
        Ok(())
    }

    /// A handle that stops this engine's roles from another thread.
    pub fn stop_handle(&mut self) -> Result<StopHandle, Error> {
        let waker = Waker::new(self.poll.registry(), STOP_TOKEN)
            .map_err(|e| Error::Setup("create stop waker", e))?;
        let requests = self
            .stop_requests
            .get_or_insert_with(Default::default)
            .clone();
        Ok(StopHandle {
            waker: Arc::new(waker),
            requests,
        })
    }

    /// Never sleeps: polls with a zero timeout, spinning a core for the lowest and steadiest
    /// latency (a wake-up from sleep costs tens of microseconds on a VM).
    pub fn busy_poll(&mut self, on: bool) {
        self.busy_poll = on;
    }

    /// Runs `roles` until every client is done (or, with no client, until a stop request).
    pub fn run(&mut self, roles: &mut [&mut dyn Role]) -> Result<RunEnd, Error> {
        let direct = roles.iter().all(|r| r.reads_directly());
        let spinning = self.busy_poll && direct;
        for (i, role) in roles.iter_mut().enumerate() {
            let (registry, first) = (self.poll.registry(), Token(i * TOKENS_PER_ROLE));
            match spinning {
                true => role.register_spinning(registry, first),
                false => role.register(registry, first),
            }
            .map_err(|e| Error::Setup("register socket", e))?;
        }
        let has_clients = roles.iter().any(|r| r.is_client());
        let mut stop_requests = 0usize;
        let mut stops_delivered = 0usize;
        // Busy-poll: the roles run when something came in or a deadline is reached, and the
        // turns between are a read of each socket, as a bare spinning loop would do.
        let mut wake = Wake::IDLE;
        let mut due = true;
        let mut turns = 0u32;
        loop {
            if stop_requests > stops_delivered {
                let now = Instant::now();
                for role in roles.iter_mut() {
                    role.stop(now, stop_requests > 1);
                }
                stops_delivered = stop_requests;
                due = true;
            }
            // A spinning turn with nothing due and no deadline does not even read the clock.
            let now = (due || wake != Wake::IDLE).then(Instant::now);
            if let Some(now) = now.filter(|&now| due || wake.reached(now)) {
                wake = Wake::IDLE;
                for role in roles.iter_mut() {
                    wake = wake.min(role.advance(now)?);
                }
                let all_done = roles
                    .iter()
                    .filter(|r| r.is_client() || !has_clients)
                    .all(|r| r.is_done());
                if all_done {
                    return Ok(RunEnd { stop_requests });
                }
            }
            due = !self.busy_poll;
            if spinning {
                turns = turns.wrapping_add(1);
                if turns % BUSY_TURNS_PER_POLL != 0 {
                    for role in roles.iter_mut() {
                        due |= role.poll_sockets()?;
                    }
                    continue;
                }
            }
            let timeout = self.sleep_plan(Instant::now(), wake);
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Setup("poll", e)),
            }
            due |= !self.events.is_empty();
            for event in self.events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => {
                        if let Some(signals) = self.signals.as_mut() {
                            stop_requests += signals.take();
                        }
                    }
                    STOP_TOKEN => {
                        if let Some(requests) = &self.stop_requests {
                            stop_requests += requests.swap(0, Ordering::SeqCst);
                        }
                    }
                    TIMER_TOKEN => {
                        if let Some(timer) = self.timer.as_mut() {
                            timer.acknowledge();
                        }
                    }
                    Token(t) => {
                        if let Some(role) = roles.get_mut(t / TOKENS_PER_ROLE) {
                            role.ready(t % TOKENS_PER_ROLE, event)?;
                        }
                    }
                }
            }
        }
    }

    /// Chooses the poll timeout, arming the precise timer for an exact deadline.
    fn sleep_plan(&mut self, now: Instant, wake: Wake) -> Option<Duration> {
        if self.busy_poll {
            return Some(Duration::ZERO);
        }
        let coarse = wake.around.map(|t| t.saturating_duration_since(now));
        let Some(exact) = wake.exactly.map(|t| t.saturating_duration_since(now)) else {
            return coarse;
        };
        if exact < SPIN_BELOW || coarse.is_some_and(|c| c.is_zero()) {
            return Some(Duration::ZERO);
        }
        let armed = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.arm(exact - SPIN_BELOW / 2).is_ok());
        let exact_sleep = if armed {
            None
        } else if exact > Duration::from_millis(2) {
            // No timer: sleep in whole milliseconds short of the deadline, spin the rest.
            Some(exact - Duration::from_millis(1))
        } else {
            Some(Duration::ZERO)
        };
        match (coarse, exact_sleep) {
            (Some(c), Some(e)) => Some(c.min(e)),
            (c, e) => c.or(e),
        }
    }
}
