//! sonde echo against clients that know nothing of sonde, and the CLI's handling of bad input.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

/// A datagram of `len` bytes that is not a sonde probe.
fn raw_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn echo_raw(port: u16, ipv6: bool, sizes: &[usize]) -> serde_json::Value {
    let (ip, client_bind) = if ipv6 {
        ("[::1]", "[::1]:0")
    } else {
        ("127.0.0.1", "127.0.0.1:0")
    };
    let target = format!("{ip}:{port}");
    // With --json the echo prints no banner: readiness is found by probing.
    let mut echo = KillOnDrop(
        sonde()
            .args(["echo", "--bind", &target, "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_echo(&target);
    let client = UdpSocket::bind(client_bind).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = vec![0u8; 70_000];
    for (i, &len) in sizes.iter().enumerate() {
        let sent = raw_bytes(len, i as u8);
        client.send_to(&sent, &target).unwrap();
        let (n, from) = client.recv_from(&mut buf).expect("echo reply");
        assert_eq!(from.to_string(), target);
        assert_eq!(n, len, "size {len} came back as {n}");
        assert_eq!(&buf[..n], &sent[..], "content of {len}-byte datagram");
    }
    let (stdout, status) = signal_and_read(&mut echo.0, "INT");
    assert!(status.success(), "echo exits 0 on Ctrl-C");
    serde_json::from_str(&stdout).expect("echo --json counters")
}

#[test]
fn raw_client_gets_its_bytes_back_ipv4() {
    let sizes = [0, 1, 31, 32, 1000, 1472, 8972, 65_507];
    let s = echo_raw(free_port(), false, &sizes);
    // The readiness probe counts too: one 6-byte datagram more.
    assert_eq!(u(&s, "datagrams"), sizes.len() as u64 + 1);
    assert_eq!(u(&s, "bytes"), sizes.iter().sum::<usize>() as u64 + 6);
    assert_eq!(u(&s, "send_failed"), 0);
    assert_eq!(u(&s, "peers"), 2);
}

#[test]
fn raw_client_gets_its_bytes_back_ipv6() {
    let port = UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = echo_raw(port, true, &[0, 7, 1500, 65_527]);
    assert_eq!(u(&s, "datagrams"), 5);
}

#[test]
fn echo_prints_counters_on_sigterm_too() {
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&["ping", &echo.addr, "--count", "10", "-w", "1"]);
    assert_eq!(u(&s, "received"), 10);
    let mut echo = echo;
    signal(&echo.child, "TERM");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut echo.stdout, &mut rest).unwrap();
    assert!(echo.child.wait().unwrap().success());
    assert!(
        rest.contains("10 of 10 datagrams echoed (640 of 640 bytes)"),
        "{rest}"
    );
}

#[test]
fn wildcard_bind_is_announced() {
    let port = free_port();
    let echo = sonde_echo(&format!("0.0.0.0:{port}"));
    assert_eq!(echo.addr, format!("0.0.0.0:{port}"));
}

/// Bad input: exit status 2, one line on stderr naming the flag, no panic.
#[test]
fn bad_flags_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["ping", "127.0.0.1:9", "--size", "10"], "--size"),
        (&["ping", "127.0.0.1:9", "--size", "70000"], "--size"),
        (&["ping", "[::1]:9", "--size", "65528"], "--size"),
        (&["ping", "127.0.0.1:9", "--size", "-5"], "--size"),
        (&["ping", "127.0.0.1:9", "--rate", "0"], "--rate"),
        (&["ping", "127.0.0.1:9", "--rate", "fast"], "--rate"),
        (&["ping", "127.0.0.1:9", "--count", "0"], "--count"),
        (
            &["ping", "127.0.0.1:9", "--count", "5", "--duration", "1s"],
            "--count",
        ),
        (&["ping", "127.0.0.1:9", "--duration", "soon"], "--duration"),
        (&["ping", "127.0.0.1:9", "--timeout", "0s"], "--timeout"),
        (&["ping", "127.0.0.1:9", "--inflight", "0"], "--inflight"),
        (&["ping", "127.0.0.1:9", "--bind", "[::1]:0"], "--bind"),
        (&["ping", "nonsense"], "HOST:PORT"),
        (&["ping", "127.0.0.1"], "HOST:PORT"),
        (&["ping", "127.0.0.1:0"], "TARGET"),
        (&["ping"], "HOST:PORT"),
        (&["echo", "--bind", "127.0.0.1"], "--bind"),
        (&["loopback", "--size", "1"], "--size"),
        (&["loopback", "--rcvbuf", "0"], "--rcvbuf"),
        (&["loopback", "--sndbuf", "lots"], "--sndbuf"),
        (&["echo", "--rcvbuf", "5G"], "--rcvbuf"),
        (&["echo", "--threads", "0"], "--threads"),
        (&["loopback", "--timestamps", "gps"], "--timestamps"),
        (&["loopback", "--gso", "always"], "--gso"),
        (&["echo", "--gro", "yes"], "--gro"),
        (&["echo", "--cpus", "x"], "--cpus"),
        (&["loopback", "--cpus", "4096"], "--cpus"),
        (&["ping", "127.0.0.1:9", "--flows", "0"], "--flows"),
        (&["loopback", "--frobnicate"], "--frobnicate"),
        (&["fly"], "fly"),
    ];
    for (args, flag) in cases {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?} should name {flag}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    }
}

#[test]
fn address_in_use_exits_1_naming_operation_and_address() {
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    let out = run(&["echo", "--bind", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("bind {addr}")), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn unassignable_local_address_exits_1() {
    // 198.18.0.1 is on no interface here: bind fails before anything is sent.
    let out = run(&["ping", "127.0.0.1:9", "--bind", "198.18.0.1:0", "-c", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bind 198.18.0.1:0"), "{stderr}");
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["ping", "--help"], &["--version"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
}

#[test]
fn unreachable_network_exits_1_naming_operation_and_address() {
    let Some(ns) = Netns::create("unreachable") else {
        return;
    };
    // The namespace has no route at all: the first send fails before anything leaves.
    let out = ns
        .command(env!("CARGO_BIN_EXE_sonde"))
        .args(["ping", "198.18.0.1:9", "--count", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("send to 198.18.0.1:9: Network is unreachable"),
        "{stderr}"
    );
}
