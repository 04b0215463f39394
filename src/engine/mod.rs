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
/// A loop that reads its sockets directly (busy-poll, or waiting in a read) asks epoll only
/// every this many turns, for what only it reports: signals, stop requests, writability,
/// queued ICMP errors.
const TURNS_PER_POLL: u32 = 64;

/// A blocking loop whose one role waits in its own read ([`Role::wait_in_reads`]) gives each
/// wait at most this long, and asks epoll at the latest then (or after [`TURNS_PER_POLL`]
/// turns of traffic) for what only it reports: Ctrl-C on another thread, a stop request, a
/// quiet socket (after which the loop waits in epoll until the socket stirs).
const READ_WAIT_CAP: Duration = Duration::from_millis(10);

/// Waiting in reads, the loop takes the socket out of epoll ([`Role::watch`]) after this many
/// reads in a row found one datagram each (a ping-pong): not for a loop that goes back to epoll
/// every turn or two (a scheduled send each), which would pay two `epoll_ctl` calls a turn for
/// it, nor for pipelined traffic, whose throughput it lowered (64 in flight: 6% on this VM).
const READS_BEFORE_UNWATCH: u32 = 8;

/// What a wait in [`Role::read_waiting`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Datagrams came and were read; [`Role::advance`] is due if `due`; `lone`: a single
    /// one, as in a ping-pong.
    Read { due: bool, lone: bool },
    /// None came within the cap, or a signal cut the wait short.
    Nothing,
    /// The role cannot wait in a read now (it waits for room to send, say): the loop waits in
    /// epoll this turn.
    NotNow,
}

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
    /// A blocking loop with this role alone: makes the role's reads wait for a datagram, up to
    /// `cap` (none: as long as it takes; the loop then never has a deadline while it reads), and
    /// says whether they do; [`Role::read_waiting`] then stands in for the loop's wait in epoll.
    /// One system call a datagram instead of two (the wait and the read), and the sender's
    /// wake-up reaches the reader directly, as it does a plain blocking client.
    fn wait_in_reads(&mut self, _cap: Option<Duration>) -> bool {
        false
    }
    /// Waits for datagrams in the read (up to the cap) and handles what came; first does what
    /// the role kept for the start of its next read (see [`Role::before_poll`]).
    fn read_waiting(&mut self) -> Result<Waited, Error> {
        Ok(Waited::NotNow)
    }
    /// Waiting in reads: the loop waits in epoll this turn rather than in
    /// [`Role::read_waiting`], so what the role keeps for its next read's start (the probe a
    /// ping-pong's pinger sends right before it waits for the reply) goes now.
    fn before_poll(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Waiting in reads: takes the role's socket out of epoll (`on` false) while its reads
    /// carry a ping-pong's traffic, and puts it back, with what it needs to hear (`first` as in
    /// [`Role::register`]), before the loop waits in epoll. A socket in an epoll set costs
    /// every datagram sent to it a wake-up call in the sender's path, which a reader waiting in
    /// its read does not need. The default leaves it in.
    fn watch(&mut self, _registry: &Registry, _first: Token, _on: bool) -> io::Result<()> {
        Ok(())
    }
    /// A stop was asked for (Ctrl-C): finish gracefully, or at once when `hard`.
    fn stop(&mut self, now: Instant, hard: bool);
    /// Clients have a finite job; the loop runs until every client is done. Services (echo) run
    /// until stopped, and end with the clients when there are any.
    fn is_client(&self) -> bool;
    fn is_done(&self) -> bool;
}

/// Whether the loop's next wait may be a read's, at most [`READ_WAIT_CAP`] long: no exact
/// deadline (the timer that keeps it is one of epoll's sources) and none closer than the cap.
/// Judged by the turn's clock read (`now`, a few microseconds old; there is one whenever there
/// is a deadline), which spares a round trip a clock read.
fn waits_long(now: Option<Instant>, wake: Wake) -> bool {
    match (wake.exactly, wake.around) {
        (Some(_), _) => false,
        (None, None) => true,
        (None, Some(t)) => now.is_some_and(|n| t.saturating_duration_since(n) >= READ_WAIT_CAP),
    }
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
    stop_waker: Option<Arc<Waker>>,
    busy_poll: bool,
    /// The loop runs on its process's only thread (`alone_in_process`).
    alone: bool,
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
            stop_waker: None,
            busy_poll: false,
            alone: false,
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
        if let (Some(waker), Some(requests)) = (&self.stop_waker, &self.stop_requests) {
            return Ok(StopHandle {
                waker: waker.clone(),
                requests: requests.clone(),
            });
        }
        let waker = Waker::new(self.poll.registry(), STOP_TOKEN)
            .map_err(|e| Error::Setup("create stop waker", e))?;
        // Kept here too: a waker dropped right after its wake would close its descriptor, and
        // epoll forgets the event of a descriptor closed before the event is collected.
        let waker = self.stop_waker.insert(Arc::new(waker)).clone();
        let requests = self
            .stop_requests
            .get_or_insert_with(Default::default)
            .clone();
        Ok(StopHandle { waker, requests })
    }

    /// Says that this loop runs on the only thread of its process, and stays so (checked when it
    /// runs): a signal then comes to this thread, so with `stop_on_signals` set to cut blocking
    /// calls short, a loop with nothing else to hear (no stop handle) and no deadline waits in
    /// its role's read without a cap, which spares the kernel a timer armed and cancelled each
    /// wait (on one CPU here: 0.06-0.14 µs a round trip, with a C echo).
    pub fn alone_in_process(&mut self) {
        self.alone = true;
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
        let one_reader = matches!(roles, [role] if !self.busy_poll && role.reads_directly());
        // Without a cap only a signal ends a wait in a read: the handlers are made to cut calls
        // short last, once everything else says the loop may wait so (`alone_in_process`).
        let uncapped = one_reader
            && self.alone
            && self.stop_waker.is_none()
            && crate::sys::threads_in_process() == Some(1)
            && self.signals.as_ref().is_some_and(|s| s.interrupt_calls());
        let cap = (!uncapped).then_some(READ_WAIT_CAP);
        let reading = one_reader && roles[0].wait_in_reads(cap);
        let has_clients = roles.iter().any(|r| r.is_client());
        let mut stop_requests = 0usize;
        let mut stops_delivered = 0usize;
        // Busy-poll: the roles run when something came in or a deadline is reached, and the
        // turns between are a read of each socket, as a bare spinning loop would do.
        let mut wake = Wake::IDLE;
        let mut due = true;
        let mut turns = 0u32;
        // Waiting in reads: the socket was quiet through the last wait, so the loop waits in
        // epoll until it stirs.
        let mut quiet = false;
        // Waiting in reads: the role's socket is in epoll, and how many reads in a row found
        // traffic.
        let mut watched = true;
        let mut streak = 0u32;
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
                if turns % TURNS_PER_POLL != 0 {
                    for role in roles.iter_mut() {
                        due |= role.poll_sockets()?;
                    }
                    continue;
                }
            }
            let may_read = match uncapped {
                // A signal that came before the read would not cut it short.
                true => wake == Wake::IDLE && !self.signals.as_ref().is_some_and(|s| s.arrived()),
                false => waits_long(now, wake),
            };
            let timeout = if reading && !quiet && may_read {
                turns = turns.wrapping_add(1);
                if turns % TURNS_PER_POLL != 0 {
                    if watched && streak >= READS_BEFORE_UNWATCH {
                        // Best effort: a socket left in epoll still works.
                        watched = roles[0]
                            .watch(self.poll.registry(), Token(0), false)
                            .is_err();
                    }
                    match roles[0].read_waiting()? {
                        Waited::Read { due: d, lone } => {
                            streak = if lone { streak.saturating_add(1) } else { 0 };
                            due = d;
                            continue;
                        }
                        Waited::Nothing => quiet = true,
                        Waited::NotNow => {}
                    }
                    self.sleep_plan(Instant::now(), wake)
                } else {
                    Some(Duration::ZERO)
                }
            } else {
                self.sleep_plan(Instant::now(), wake)
            };
            if reading {
                roles[0].before_poll()?;
            }
            if timeout != Some(Duration::ZERO) {
                // A wait in epoll: the role's socket must be heard again.
                streak = 0;
                if !watched {
                    roles[0]
                        .watch(self.poll.registry(), Token(0), true)
                        .map_err(|e| Error::Setup("register socket", e))?;
                    watched = true;
                }
            }
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
                        quiet = false;
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use crate::sys::MmsgBatch;
    use mio::net::UdpSocket;

    /// Counts datagrams, by the path that read them; done after `until` of them.
    struct Counter {
        socket: UdpSocket,
        batch: MmsgBatch,
        until: usize,
        events: usize,
        by_event: usize,
        by_wait: usize,
        empty_waits: usize,
        stopped: bool,
        /// Each [`Role::watch`] call's `on`, in order.
        watches: Vec<bool>,
        /// Whether a read of one datagram says so (`Waited::Read`'s `lone`).
        tells_lone: bool,
    }

    impl Counter {
        fn read(&mut self, wait: bool) -> usize {
            self.batch.receive(&self.socket, wait).unwrap_or(0)
        }
    }

    impl Role for Counter {
        fn register(&mut self, registry: &Registry, first: Token) -> io::Result<()> {
            registry.register(&mut self.socket, first, Interest::READABLE)
        }
        fn ready(&mut self, _: usize, _: &Event) -> Result<(), Error> {
            self.events += 1;
            loop {
                match self.read(false) {
                    0 => return Ok(()),
                    n => self.by_event += n,
                }
            }
        }
        fn advance(&mut self, _: Instant) -> Result<Wake, Error> {
            Ok(Wake::IDLE)
        }
        fn reads_directly(&self) -> bool {
            true
        }
        fn wait_in_reads(&mut self, cap: Option<Duration>) -> bool {
            crate::sys::wait_in_reads(&self.socket, cap).is_ok()
        }
        fn watch(&mut self, registry: &Registry, first: Token, on: bool) -> io::Result<()> {
            self.watches.push(on);
            match on {
                true => registry.register(&mut self.socket, first, Interest::READABLE),
                false => registry.deregister(&mut self.socket),
            }
        }
        fn read_waiting(&mut self) -> Result<Waited, Error> {
            match self.read(true) {
                0 => {
                    self.empty_waits += 1;
                    Ok(Waited::Nothing)
                }
                n => {
                    self.by_wait += n;
                    Ok(Waited::Read {
                        due: true,
                        lone: n == 1 && self.tells_lone,
                    })
                }
            }
        }
        fn stop(&mut self, _: Instant, _: bool) {
            self.stopped = true;
        }
        fn is_client(&self) -> bool {
            true
        }
        fn is_done(&self) -> bool {
            self.stopped || self.by_event + self.by_wait >= self.until
        }
    }

    fn counter(until: usize) -> (Counter, std::net::SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = socket.local_addr().unwrap();
        let mut batch = MmsgBatch::new();
        batch.set_control_messages(false);
        let role = Counter {
            socket,
            batch,
            until,
            events: 0,
            by_event: 0,
            by_wait: 0,
            empty_waits: 0,
            stopped: false,
            watches: Vec::new(),
            tells_lone: true,
        };
        (role, addr)
    }

    /// Sends up to `n` datagrams to `to`, one at a time with `gap` between them, until `halt`.
    fn send(
        to: std::net::SocketAddr,
        n: usize,
        gap: Duration,
        halt: Arc<AtomicUsize>,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for _ in 0..n {
                if halt.load(Ordering::Relaxed) > 0 {
                    return;
                }
                socket.send_to(b"datagram", to).unwrap();
                std::thread::sleep(gap);
            }
        })
    }

    #[test]
    fn a_lone_role_waits_in_its_read_and_epoll_takes_over_when_it_goes_quiet() {
        let (mut role, addr) = counter(2_000);
        let halt = Arc::new(AtomicUsize::new(0));
        let sender = send(addr, 1_950, Duration::from_micros(50), halt.clone());
        // Then quiet for longer than a wait's cap: the loop falls back to epoll, whose event
        // brings the next datagrams in.
        let late = std::thread::spawn(move || {
            sender.join().unwrap();
            std::thread::sleep(READ_WAIT_CAP * 5);
            send(addr, 50, Duration::ZERO, halt).join().unwrap();
        });
        let mut engine = Engine::new().unwrap();
        // A loop that lost its socket would wait in epoll for good: the test fails instead.
        let watchdog = engine.stop_handle().unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            watchdog.stop();
        });
        engine.run(&mut [&mut role]).unwrap();
        late.join().unwrap();
        assert!(!role.stopped, "the loop did not hear the late datagrams");
        assert_eq!(role.by_event + role.by_wait, 2_000);
        assert!(role.empty_waits >= 1, "the quiet spell was not waited out");
        assert!(role.by_event >= 1, "epoll did not take over");
        // Out of epoll while the reads carried the traffic, back in for the quiet spell.
        assert!(
            role.watches.starts_with(&[false, true]),
            "{:?}",
            role.watches
        );
        let alternate = role.watches.windows(2).all(|w| w[0] != w[1]);
        assert!(alternate, "{:?}", role.watches);
        // Epoll is asked one turn in TURNS_PER_POLL, and after each quiet spell.
        let polls = 2_000 / TURNS_PER_POLL as usize + 2 * role.empty_waits + 2;
        assert!(
            role.events <= polls,
            "{} events for {polls} polls",
            role.events
        );
        assert!(role.by_wait >= 1_500, "{} read by waiting", role.by_wait);
    }

    #[test]
    fn reads_of_several_datagrams_leave_the_socket_in_epoll() {
        let (mut role, addr) = counter(500);
        role.tells_lone = false;
        let halt = Arc::new(AtomicUsize::new(0));
        let sender = send(addr, 500, Duration::from_micros(50), halt);
        Engine::new().unwrap().run(&mut [&mut role]).unwrap();
        sender.join().unwrap();
        assert!(role.by_wait >= 400, "{} read by waiting", role.by_wait);
        assert!(role.watches.is_empty(), "{:?}", role.watches);
    }

    #[test]
    fn a_stop_request_ends_a_loop_whose_reads_never_go_quiet() {
        let (mut role, addr) = counter(usize::MAX);
        let mut engine = Engine::new().unwrap();
        let stop = engine.stop_handle().unwrap();
        // Traffic for far longer than the test waits for the stop.
        let halt = Arc::new(AtomicUsize::new(0));
        let sender = send(addr, 100_000, Duration::from_micros(20), halt.clone());
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            stop.stop();
        });
        let started = Instant::now();
        engine.run(&mut [&mut role]).unwrap();
        let took = started.elapsed();
        halt.store(1, Ordering::Relaxed);
        stopper.join().unwrap();
        sender.join().unwrap();
        assert!(role.stopped);
        assert!(role.by_wait > 0, "never waited in a read");
        assert!(took < Duration::from_secs(1), "stopped after {took:?}");
    }

    #[test]
    fn a_loop_of_several_roles_waits_in_epoll() {
        let (mut a, addr_a) = counter(100);
        let (mut b, addr_b) = counter(100);
        let halt = Arc::new(AtomicUsize::new(0));
        let sa = send(addr_a, 100, Duration::ZERO, halt.clone());
        let sb = send(addr_b, 100, Duration::ZERO, halt);
        Engine::new().unwrap().run(&mut [&mut a, &mut b]).unwrap();
        sa.join().unwrap();
        sb.join().unwrap();
        assert_eq!((a.by_wait, b.by_wait), (0, 0));
        assert!(a.watches.is_empty() && b.watches.is_empty());
        assert_eq!((a.by_event, b.by_event), (100, 100));
    }
}
