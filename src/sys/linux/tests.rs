//! The batch and offload paths against the real kernel, on loopback.

use super::mmsg::SINGLES_BETWEEN_TRIES;
use super::sockopt::set_int_option;
use super::*;
use crate::sys::{RecvMeta, SendBatch};
use mio::net::UdpSocket;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

fn bound() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// Receives on `socket` until `n` datagrams (or a short wait) and returns them.
fn take(socket: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while got.len() < n && std::time::Instant::now() < deadline {
        match socket.recv_from(&mut buf) {
            Ok((len, _)) => got.push(buf[..len].to_vec()),
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    got
}

/// Sends 10 datagrams of 100 bytes (datagram k filled with byte k) from `client` as one GSO
/// run, and receives them on `echo` (GRO on): one slot.
fn coalesced_run(client: &UdpSocket, echo: &UdpSocket) -> MmsgBatch {
    let client_addr = client.local_addr().unwrap();
    assert!(enable_gro(echo), "UDP_GRO refused by this kernel");
    let mut out = SendBatch::new(10, 100, echo.local_addr().unwrap());
    out.set_gso(true);
    for k in 0..10u8 {
        out.push().unwrap().fill(k);
    }
    assert_eq!(out.send(client, 0).unwrap(), 10);
    assert!(out.gso(), "{:?}", out.gso_refused());
    let mut batch = MmsgBatch::new();
    let mut slots = 0;
    for _ in 0..200 {
        slots = batch.receive(echo, false).unwrap();
        if slots > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(slots, 1, "the run should arrive as one buffer");
    let meta = batch.meta(0).unwrap();
    assert_eq!(
        (meta.len, meta.segment, meta.from),
        (1000, Some(100), client_addr)
    );
    let seen: Vec<u8> = meta.datagrams(batch.payload(0)).map(|d| d[0]).collect();
    assert_eq!(seen, (0..10).collect::<Vec<u8>>());
    batch
}

#[test]
fn a_gso_run_arrives_coalesced_and_goes_back_as_the_datagrams_answered() {
    let (client, _) = bound();
    let (echo, _) = bound();
    let mut batch = coalesced_run(&client, &echo);
    let slots = 1;
    // Refuse 2 and 7, shorten 5 (so a run must end after it): replies 0 1 | 3 4 5' | 6 8 9.
    let (mut calls, mut sealed) = (0, Vec::new());
    let refused = batch.reply_with(
        &echo,
        slots,
        |slot, datagram| {
            assert_eq!(slot, 0);
            calls += 1;
            match datagram[0] {
                2 | 7 => None,
                5 => Some(40),
                _ => Some(1_000_000), // capped at what arrived
            }
        },
        // Every reply is sealed once, whole, just before it goes.
        |reply| sealed.push((reply[0], reply.len())),
    );
    assert_eq!((refused, calls), (0, 10));
    let replies = take(&client, 8);
    let summary: Vec<(u8, usize)> = replies.iter().map(|r| (r[0], r.len())).collect();
    assert_eq!(
        summary,
        [
            (0, 100),
            (1, 100),
            (3, 100),
            (4, 100),
            (5, 40),
            (6, 100),
            (8, 100),
            (9, 100)
        ]
    );
    assert_eq!(sealed, summary, "each reply sealed once, as sent");
    for r in &replies {
        assert!(
            r.iter().all(|&b| b == r[0]),
            "a reply mixes datagrams: {r:?}"
        );
    }
}

#[test]
fn an_echo_whose_gso_reply_is_refused_answers_one_by_one() {
    let (client, _) = bound();
    let (echo, _) = bound();
    let mut batch = coalesced_run(&client, &echo);
    // Without UDP checksums (SO_NO_CHECK) the kernel refuses GSO with EINVAL.
    set_int_option(&echo, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    assert!(batch.gso());
    assert_eq!(batch.reply_with(&echo, 1, |_, d| Some(d.len()), |_| {}), 0);
    assert!(!batch.gso(), "the GSO reply should have been refused");
    let got: Vec<(u8, usize)> = take(&client, 10).iter().map(|d| (d[0], d.len())).collect();
    assert_eq!(got, (0..10).map(|k| (k, 100)).collect::<Vec<_>>());
}

#[test]
fn a_kernel_refusing_gso_gets_one_datagram_per_message_and_nothing_is_lost() {
    let (client, _) = bound();
    let (echo, echo_addr) = bound();
    // Without UDP checksums (SO_NO_CHECK) the kernel refuses GSO with EINVAL.
    set_int_option(&client, libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    let mut out = SendBatch::new(8, 64, echo_addr);
    out.set_gso(true);
    for k in 0..8u8 {
        out.push().unwrap().fill(k);
    }
    assert_eq!(out.send(&client, 0).unwrap(), 8);
    assert!(!out.gso());
    assert_eq!(
        out.gso_refused().and_then(io::Error::raw_os_error),
        Some(libc::EINVAL)
    );
    let got: Vec<u8> = take(&echo, 8).iter().map(|d| d[0]).collect();
    assert_eq!(got, (0..8).collect::<Vec<u8>>());
    // Off for good: asking again does not turn it back on.
    out.set_gso(true);
    assert!(!out.gso());
}

#[test]
fn datagrams_of_a_receive_split_at_the_segment_size() {
    let meta = |segment| RecvMeta {
        len: 0,
        from: "127.0.0.1:1".parse().unwrap(),
        kernel_rx: None,
        drops: None,
        segment,
        ttl: None,
        tos: None,
        dst: None,
    };
    let data = [0u8; 250];
    let sizes = |m: RecvMeta, d: &[u8]| m.datagrams(d).map(<[u8]>::len).collect::<Vec<_>>();
    assert_eq!(sizes(meta(Some(100)), &data), [100, 100, 50]);
    assert_eq!(sizes(meta(None), &data), [250]);
    // An empty datagram is still a datagram.
    assert_eq!(sizes(meta(None), &[]), [0]);
}

/// Waits until `socket` has a datagram queued (loopback delivers within the send call, but the
/// test should not depend on it).
fn queued(socket: &UdpSocket) {
    let mut buf = [0u8; 64];
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        // Safety: buf is live and writable for its length.
        let peeked = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(socket),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        if peeked >= 0 || std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn reads_of_one_datagram_try_for_two_now_and_then_and_grow_when_more_wait() {
    let (client, _) = bound();
    let (echo, echo_addr) = bound();
    let mut batch = MmsgBatch::new();
    batch.set_adaptive(true);
    assert_eq!(batch.receive(&echo, false).unwrap(), 0);
    // A ping-pong: one datagram a read, each asked for alone, but for two every few reads.
    let mut asks = Vec::new();
    for i in 0..2 * (SINGLES_BETWEEN_TRIES + 1) {
        client.send_to(&i.to_be_bytes(), echo_addr).unwrap();
        queued(&echo);
        assert_eq!(batch.receive(&echo, false).unwrap(), 1);
        asks.push(batch.capacity());
    }
    let tries = asks.iter().filter(|&&ask| ask == 2).count();
    assert_eq!(tries, 2, "asks: {asks:?}");
    assert_eq!(asks.iter().filter(|&&ask| ask == 1).count(), asks.len() - 2);
    // Traffic that builds up: the next try comes back full, and the asks double from there.
    for i in 0..40u32 {
        client.send_to(&i.to_be_bytes(), echo_addr).unwrap();
    }
    queued(&echo);
    let mut read = 0;
    let mut largest = 0;
    while read < 40 {
        let n = batch.receive(&echo, false).unwrap();
        assert!(n > 0, "{read} of 40 read, then nothing");
        largest = largest.max(batch.capacity());
        read += n;
    }
    assert_eq!(read, 40);
    assert!(largest >= 8, "asks grew only to {largest}");
}

#[test]
fn a_lone_datagram_without_control_messages_is_read_alone_and_answered() {
    let (client, client_addr) = bound();
    let (echo, echo_addr) = bound();
    let mut batch = MmsgBatch::new();
    batch.set_adaptive(true);
    batch.set_control_messages(false);
    assert_eq!(batch.receive(&echo, false).unwrap(), 0);
    client.send_to(b"first", echo_addr).unwrap();
    queued(&echo);
    // One asked (the queue was empty last time), one read with `recvfrom`: slot 0 reads as a
    // batch's would.
    assert_eq!(batch.receive(&echo, false).unwrap(), 1);
    assert_eq!(batch.capacity(), 1);
    let meta = batch.meta(0).unwrap();
    assert_eq!((meta.len, meta.from, meta.segment), (5, client_addr, None));
    assert_eq!(batch.payload(0), b"first");
    // The reply goes to the sender, capped at what arrived.
    let answered = batch.reply_single(&echo, |d| {
        d[0] = b'F';
        Some(100)
    });
    assert_eq!(answered, Some((5, false)));
    assert_eq!(take(&client, 1), vec![b"First".to_vec()]);
    // One datagram for one asked: the next call asks for one again (a ping-pong's next).
    assert_eq!(batch.receive(&echo, false).unwrap(), 0);
    assert_eq!(batch.capacity(), 1);
    client.send_to(b"second, longer", echo_addr).unwrap();
    queued(&echo);
    assert_eq!(batch.receive(&echo, false).unwrap(), 1);
    assert_eq!(batch.capacity(), 1);
    assert_eq!(batch.payload(0), b"second, longer");
    assert_eq!(batch.meta(0).unwrap().from, client_addr);
    assert_eq!(batch.reply_single(&echo, |_| None), None);
    // With control messages, the same goes through `recvmsg`, metadata and all.
    batch.set_control_messages(true);
    assert!(enable_recv_destination(&echo, false));
    assert_eq!(batch.receive(&echo, false).unwrap(), 0);
    client.send_to(b"third", echo_addr).unwrap();
    queued(&echo);
    assert_eq!(batch.receive(&echo, false).unwrap(), 1);
    assert_eq!(batch.payload(0), b"third");
    assert!(
        batch.meta(0).unwrap().dst.is_some(),
        "the destination came with it"
    );
}

#[test]
fn an_adaptive_read_asks_for_no_more_than_its_limit() {
    let (client, _) = bound();
    let (reader, reader_addr) = bound();
    assert!(wait_in_reads(&reader, Some(Duration::from_millis(100))).is_ok());
    let mut batch = MmsgBatch::new();
    batch.set_adaptive(true);
    batch.set_control_messages(false);
    batch.set_ask_limit(1);
    for payload in [&b"one"[..], b"two", b"three"] {
        client.send_to(payload, reader_addr).unwrap();
    }
    queued(&reader);
    // Each waiting read takes one, however many wait, and the next takes the next.
    for payload in [&b"one"[..], b"two"] {
        assert_eq!(batch.receive(&reader, true).unwrap(), 1);
        assert_eq!(batch.capacity(), 1);
        assert_eq!(batch.payload(0), payload);
    }
    // A read that does not wait too.
    assert_eq!(batch.receive(&reader, false).unwrap(), 1);
    assert_eq!(batch.capacity(), 1);
    assert_eq!(batch.payload(0), b"three");
    // Nothing left: the wait times out.
    assert_eq!(batch.receive(&reader, true).unwrap(), 0);
}

#[test]
fn a_batch_asked_to_stamp_its_reads_reads_the_clock_as_each_returns_with_datagrams() {
    let (client, _) = bound();
    let (echo, echo_addr) = bound();
    let mut batch = MmsgBatch::new();
    batch.set_stamp_reads(true);
    assert_eq!(batch.receive(&echo, false).unwrap(), 0);
    assert_eq!(batch.read_at(), None, "nothing came: no time");
    for (control, ask) in [(false, 1), (true, 1), (true, 32)] {
        batch.set_control_messages(control);
        batch.set_ask_limit(ask);
        client.send_to(b"timed", echo_addr).unwrap();
        queued(&echo);
        let before = std::time::Instant::now();
        assert_eq!(batch.receive(&echo, false).unwrap(), 1);
        let after = std::time::Instant::now();
        let at = batch.read_at().expect("a time for the read");
        assert!(before <= at && at <= after, "control {control}, ask {ask}");
    }
    batch.set_stamp_reads(false);
    client.send_to(b"untimed", echo_addr).unwrap();
    queued(&echo);
    assert_eq!(batch.receive(&echo, false).unwrap(), 1);
    assert_eq!(batch.read_at(), None);
}

#[test]
fn the_threads_of_the_process_are_counted() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let waiting = std::thread::spawn(move || rx.recv());
    // This test's thread and the one just started, at least.
    let counted = threads_in_process().expect("a count from /proc");
    drop(tx);
    let _ = waiting.join();
    assert!(counted >= 2, "{counted} threads counted");
}

#[test]
fn a_handler_made_to_interrupt_calls_loses_sa_restart_and_keeps_the_rest() {
    let signal = libc::SIGUSR2;
    let id = signal_hook::flag::register(signal, Default::default()).unwrap();
    let flags = || {
        // Safety: all-zero is a valid sigaction to be filled; only queried.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::sigaction(signal, std::ptr::null(), &mut action) },
            0
        );
        (action.sa_flags, action.sa_sigaction)
    };
    let (before, handler) = flags();
    assert_ne!(before & libc::SA_RESTART, 0, "signal-hook restarts calls");
    signal_interrupts_calls(signal).unwrap();
    let (after, same) = flags();
    assert_eq!(after, before & !libc::SA_RESTART);
    assert_eq!(same, handler);
    signal_hook::low_level::unregister(id);
}
