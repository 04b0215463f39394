//! The process around the loop: how many threads it has, and whether a signal cuts a blocking
//! call short.

use std::io;

/// Threads in this process, as the kernel counts them (`/proc/self/status`).
pub(crate) fn threads_in_process() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Threads:"))?;
    line["Threads:".len()..].trim().parse().ok()
}

/// Makes `signal`'s handler, as installed, cut blocking calls short (`EINTR`) rather than have
/// them restarted: clears `SA_RESTART` from its action, keeping the rest.
pub(crate) fn signal_interrupts_calls(signal: libc::c_int) -> io::Result<()> {
    // Safety: all-zero is a valid sigaction to be filled; sigaction reads and writes only the
    // structs passed, and the handler it sets again is the one it just read.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut action) != 0 {
            return Err(io::Error::last_os_error());
        }
        if action.sa_sigaction == libc::SIG_DFL || action.sa_sigaction == libc::SIG_IGN {
            return Err(io::ErrorKind::NotFound.into());
        }
        action.sa_flags &= !libc::SA_RESTART;
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
