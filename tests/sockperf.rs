//! sockperf wire compatibility, against sockperf itself (installed by .ci/run; skipped with a
//! reason elsewhere): sonde's pinger measures a `sockperf server`, and sockperf's client measures
//! `sonde echo --wire sockperf`.

mod common;

use common::*;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

#[test]
fn sonde_ping_measures_a_sockperf_server() {
    if !have_peer("sockperf") {
        return;
    }
    let port = free_port();
    let _server = KillGroupOnDrop(
        Command::new("sockperf")
            .args(["server", "-i", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let target = format!("127.0.0.1:{port}");
    // sockperf's server prints nothing useful for readiness: retry the first short run.
    let mut s = serde_json::Value::Null;
    for _ in 0..50 {
        s = run_json(&[
            "ping",
            &target,
            "--wire",
            "sockperf",
            "--count",
            "20",
            "-w",
            "1",
            "--timeout",
            "100ms",
        ]);
        if u(&s, "received") == 20 {
            break;
        }
    }
    assert_eq!(u(&s, "received"), 20, "{s}");
    let s = run_json(&[
        "ping", &target, "--wire", "sockperf", "--count", "2000", "-w", "8",
    ]);
    assert_eq!(u(&s, "received"), 2000, "{s}");
    assert_eq!(u(&s, "mismatched"), 0, "{s}");
}

#[test]
fn sockperf_client_measures_sonde_echo() {
    if !have_peer("sockperf") {
        return;
    }
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", "127.0.0.1:0", "--wire", "sockperf"]);
    let echo = spawn_listening(cmd);
    let (ip, port) = echo.addr.rsplit_once(':').unwrap();
    let out = Command::new("timeout")
        .args([
            "30",
            "sockperf",
            "ping-pong",
            "-i",
            ip,
            "-p",
            port,
            "-m",
            "64",
            "-t",
            "1",
        ])
        .args(["--full-rtt"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("# dropped messages = 0"), "{text}");
    let received: u64 = text
        .lines()
        .find(|l| l.contains("[Valid Duration]"))
        .and_then(|l| l.split("ReceivedMessages=").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ReceivedMessages in {text}"));
    assert!(received > 100, "{text}");
}

#[test]
fn loopback_speaks_sockperf_end_to_end() {
    let s = run_json(&[
        "loopback", "--wire", "sockperf", "--count", "1000", "--flows", "1",
    ]);
    assert_eq!(u(&s, "received"), 1000);
    let out = run(&["ping", "127.0.0.1:9", "--wire", "sockperf", "--size", "13"]);
    assert_eq!(out.status.code(), Some(2), "sockperf's header is 14 bytes");
    let out = run(&["ping", "127.0.0.1:9", "--wire", "tcp"]);
    assert_eq!(out.status.code(), Some(2));
}
