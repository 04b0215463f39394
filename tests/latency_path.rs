//! The lowest-overhead latency path (issue #15): `--connect`, a connected pinger socket.

mod common;

use common::*;
use std::time::Duration;

/// A ping from the fixed local port `port` to `echo` (1 s of probes), with 50 stray datagrams
/// sent to that port from elsewhere in the middle of it; returns the summary.
fn ping_with_strays(echo: &str, port: u16, extra: &[&str]) -> serde_json::Value {
    let bind = format!("127.0.0.1:{port}");
    let strays = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..50 {
            stray.send_to(b"a stray datagram", &bind).unwrap();
        }
    });
    let local = format!("127.0.0.1:{port}");
    let base = [
        "ping", echo, "-b", &local, "-c", "300", "-r", "300", "-t", "200ms",
    ];
    let s = run_json(&[&base[..], extra].concat());
    strays.join().unwrap();
    s
}

#[test]
fn a_connected_pinger_measures_the_same_and_no_longer_sees_other_sources() {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let echo = sonde_echo(bind);
        let s = run_json(&["ping", &echo.addr, "--connect", "-w", "1", "-c", "2000"]);
        assert_eq!(u(&s, "received"), 2000, "{s}");
        assert_eq!(s["socket"]["connected"], true, "{s}");
    }
    let echo = sonde_echo("127.0.0.1:0");
    let s = ping_with_strays(&echo.addr, free_port(), &[]);
    assert_eq!((u(&s, "received"), u(&s, "foreign")), (300, 50), "{s}");
    let s = ping_with_strays(&echo.addr, free_port(), &["--connect"]);
    assert_eq!((u(&s, "received"), u(&s, "foreign")), (300, 0), "{s}");
    // The text summary says what was given up.
    let out = run(&[
        "ping",
        &echo.addr,
        "--connect",
        "-c",
        "3",
        "-r",
        "100",
        "-q",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("datagrams from elsewhere were not seen"),
        "{text}"
    );
    // A stopped server is still an outage (ICMP on a connected socket comes as an error).
    let silent = format!("127.0.0.1:{}", free_port());
    let s = run_json(&[
        "ping",
        &silent,
        "--connect",
        "-c",
        "20",
        "-r",
        "100",
        "-t",
        "100ms",
    ]);
    assert_eq!(u(&s, "received"), 0, "{s}");
    assert!(u(&s, "unreachable") > 0, "{s}");
    // An echo answers many peers: --connect is refused there.
    let out = run(&["echo", "--connect"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--connect"), "{stderr}");
}
