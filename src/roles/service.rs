//! What the service roles (echo, relay) share: they run until stopped, and read their sockets
//! under one rule for receive errors.

use std::io;

/// Receive errors tolerated back to back before a role stops reading for this readiness event
/// and goes back to waiting (a socket that keeps failing must not spin the loop).
pub(crate) const MAX_ERRORS_IN_A_ROW: u32 = 16;

/// A service's life: it serves until a stop is asked for.
#[derive(Debug, Default)]
pub(crate) struct Service {
    stopped: bool,
    errors: ReceiveErrors,
}

impl Service {
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    pub(crate) fn is_done(&self) -> bool {
        self.stopped
    }

    /// Receive errors counted so far (ICMP errors reported on the socket, for instance).
    pub(crate) fn receive_errors(&self) -> u64 {
        self.errors.total
    }

    /// Judges one receive call's result by the rule every service follows.
    pub(crate) fn judge<T>(&mut self, result: io::Result<T>) -> Next<T> {
        self.errors.judge(result)
    }
}

/// What to do after one receive call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// It received: handle it, then read again.
    Handle(T),
    /// Read again (interrupted, or an error to count and move past).
    Retry,
    /// Nothing more to read for now: wait for the next event.
    Wait,
}

/// The one receive-error rule: an interrupted call is retried; would-block ends the read; any
/// other error (a queued ICMP error, a transient failure) is counted and the read goes on, until
/// [`MAX_ERRORS_IN_A_ROW`] in a row end it for this event.
#[derive(Debug, Default)]
struct ReceiveErrors {
    in_a_row: u32,
    total: u64,
}

impl ReceiveErrors {
    fn judge<T>(&mut self, result: io::Result<T>) -> Next<T> {
        match result {
            Ok(value) => {
                self.in_a_row = 0;
                Next::Handle(value)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Next::Wait,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Next::Retry,
            Err(_) => {
                self.total += 1;
                self.in_a_row += 1;
                if self.in_a_row >= MAX_ERRORS_IN_A_ROW {
                    self.in_a_row = 0;
                    Next::Wait
                } else {
                    Next::Retry
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> io::Result<usize> {
        Err(io::Error::from_raw_os_error(libc::ECONNREFUSED))
    }

    #[test]
    fn errors_are_counted_and_moved_past_until_too_many_in_a_row() {
        let mut service = Service::default();
        for _ in 0..MAX_ERRORS_IN_A_ROW - 1 {
            assert_eq!(service.judge(refused()), Next::Retry);
        }
        assert_eq!(service.judge(refused()), Next::Wait);
        assert_eq!(service.receive_errors(), u64::from(MAX_ERRORS_IN_A_ROW));
        // The next event starts a fresh run of errors.
        assert_eq!(service.judge(refused()), Next::Retry);
    }

    #[test]
    fn a_success_resets_the_run_and_would_block_ends_the_read() {
        let mut service = Service::default();
        for _ in 0..MAX_ERRORS_IN_A_ROW - 1 {
            service.judge(refused());
        }
        assert_eq!(service.judge(Ok(5usize)), Next::Handle(5));
        assert_eq!(service.judge(refused()), Next::Retry);
        let interrupted = io::Error::from(io::ErrorKind::Interrupted);
        assert_eq!(service.judge::<usize>(Err(interrupted)), Next::Retry);
        let empty = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(service.judge::<usize>(Err(empty)), Next::Wait);
        assert_eq!(service.receive_errors(), u64::from(MAX_ERRORS_IN_A_ROW));
    }

    #[test]
    fn a_service_runs_until_stopped() {
        let mut service = Service::default();
        assert!(!service.is_done());
        service.stop();
        assert!(service.is_done());
    }
}
