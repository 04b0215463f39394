//! The socket calls of the hot path, made with `syscall(2)` rather than glibc's wrappers.
//!
//! Once a process has had a second thread (sonde's engine may start several), glibc surrounds
//! every cancellation point (`recvmmsg`, `sendto`, ...) with two calls that turn asynchronous
//! cancellation on and off: about a tenth of a busy-polling turn, measured with `perf`. sonde
//! never cancels a thread, so it has no use for them.

/// `recvmmsg(fd, headers, count, flags, NULL)`: messages received, or -1 with `errno` set.
///
/// # Safety
/// `headers` points at `count` headers whose buffers are live and writable as declared.
pub(super) unsafe fn recvmmsg(
    fd: libc::c_int,
    headers: *mut libc::mmsghdr,
    count: usize,
    flags: libc::c_int,
) -> isize {
    // Safety: the caller's contract; a null timeout is allowed.
    unsafe {
        libc::syscall(
            libc::SYS_recvmmsg,
            fd,
            headers,
            count as libc::c_uint,
            flags,
            std::ptr::null_mut::<libc::timespec>(),
        ) as isize
    }
}

/// `sendmmsg(fd, headers, count, flags)`: messages sent, or -1 with `errno` set.
///
/// # Safety
/// `headers` points at `count` headers whose buffers are live as declared.
pub(super) unsafe fn sendmmsg(
    fd: libc::c_int,
    headers: *mut libc::mmsghdr,
    count: usize,
    flags: libc::c_int,
) -> isize {
    // Safety: the caller's contract.
    unsafe {
        libc::syscall(
            libc::SYS_sendmmsg,
            fd,
            headers,
            count as libc::c_uint,
            flags,
        ) as isize
    }
}

/// `sendmsg(fd, header, flags)`: bytes sent, or -1 with `errno` set.
///
/// # Safety
/// `header` and what it points at are live as declared.
pub(super) unsafe fn sendmsg(
    fd: libc::c_int,
    header: *const libc::msghdr,
    flags: libc::c_int,
) -> isize {
    // Safety: the caller's contract.
    unsafe { libc::syscall(libc::SYS_sendmsg, fd, header, flags) as isize }
}

/// `sendto(fd, data, len, flags, name, namelen)`: bytes sent, or -1 with `errno` set.
///
/// # Safety
/// `data` holds `len` readable bytes; `name` is null or holds `namelen` readable bytes.
pub(super) unsafe fn sendto(
    fd: libc::c_int,
    data: *const u8,
    len: usize,
    flags: libc::c_int,
    name: *const libc::sockaddr,
    namelen: libc::socklen_t,
) -> isize {
    // Safety: the caller's contract.
    unsafe { libc::syscall(libc::SYS_sendto, fd, data, len, flags, name, namelen) as isize }
}

/// `recvmsg(fd, header, flags)`: bytes received, or -1 with `errno` set.
///
/// # Safety
/// `header` points at a header whose name, data and control buffers are live and writable as
/// declared.
pub(super) unsafe fn recvmsg(
    fd: libc::c_int,
    header: *mut libc::msghdr,
    flags: libc::c_int,
) -> isize {
    // Safety: the caller's contract.
    unsafe { libc::syscall(libc::SYS_recvmsg, fd, header, flags) as isize }
}

/// `recvfrom(fd, data, len, flags, name, namelen)`: bytes received, or -1 with `errno` set.
///
/// # Safety
/// `data` holds `len` writable bytes; `name` holds `*namelen` writable bytes.
pub(super) unsafe fn recvfrom(
    fd: libc::c_int,
    data: *mut u8,
    len: usize,
    flags: libc::c_int,
    name: *mut libc::sockaddr,
    namelen: *mut libc::socklen_t,
) -> isize {
    // Safety: the caller's contract.
    unsafe { libc::syscall(libc::SYS_recvfrom, fd, data, len, flags, name, namelen) as isize }
}
