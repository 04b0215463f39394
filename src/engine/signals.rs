//! Ctrl-C and SIGTERM as stop requests: the signal handlers write to a pipe the poll loop watches
//! (the self-pipe trick), so no work is ever done in a handler.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SIGNALS: [libc::c_int; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

/// SIGINT/SIGTERM delivered as bytes on a pipe the poll loop watches (the self-pipe trick).
pub(super) struct StopSignals {
    pub(super) reader: mio::net::UnixStream,
    /// Set by the handlers too: a load tells a loop about to block in a read, where the pipe
    /// would take a system call.
    arrived: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    pub(super) fn install() -> io::Result<Self> {
        let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let arrived = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for signal in SIGNALS {
            ids.push(signal_hook::low_level::pipe::register(
                signal,
                writer.try_clone()?,
            )?);
            ids.push(signal_hook::flag::register(signal, arrived.clone())?);
        }
        Ok(Self {
            reader: mio::net::UnixStream::from_std(reader),
            arrived,
            ids,
        })
    }

    /// Makes the handlers cut blocking calls short (`EINTR`) instead of having them restarted;
    /// says whether both do.
    pub(super) fn interrupt_calls(&self) -> bool {
        SIGNALS
            .iter()
            .all(|&signal| crate::sys::signal_interrupts_calls(signal).is_ok())
    }

    /// Whether a signal came since the last [`StopSignals::take`].
    pub(super) fn arrived(&self) -> bool {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Signals received since the last call.
    pub(super) fn take(&mut self) -> usize {
        // Cleared first: a signal from here on is seen at the next look.
        self.arrived.store(false, Ordering::SeqCst);
        let mut buf = [0u8; 64];
        let mut count = 0;
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return count,
                Ok(n) => count += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return count,
            }
        }
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
