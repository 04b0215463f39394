//! Ctrl-C and SIGTERM as stop requests: the signal handlers write to a pipe the poll loop watches
//! (the self-pipe trick), so no work is ever done in a handler.

use std::io::{self, Read};

/// SIGINT/SIGTERM delivered as bytes on a pipe the poll loop watches (the self-pipe trick).
pub(super) struct StopSignals {
    pub(super) reader: mio::net::UnixStream,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    pub(super) fn install() -> io::Result<Self> {
        let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        let mut ids = Vec::new();
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            ids.push(signal_hook::low_level::pipe::register(
                signal,
                writer.try_clone()?,
            )?);
        }
        Ok(Self {
            reader: mio::net::UnixStream::from_std(reader),
            ids,
        })
    }

    /// Signals received since the last call.
    pub(super) fn take(&mut self) -> usize {
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
