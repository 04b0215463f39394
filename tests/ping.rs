//! sonde ping against real echo servers on loopback: sonde's own, third-party, and broken ones.

mod common;

use common::*;
use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Every probe ends in exactly one state.
fn assert_accounted(s: &serde_json::Value) {
    assert_eq!(
        u(s, "sent"),
        u(s, "received") + u(s, "lost") + u(s, "late") + u(s, "in_flight"),
        "probe states do not add up: {s}"
    );
}

/// The ten-line stdlib echo of scripts/py-echo.py (`None`, with the skip said, without python3).
fn python_echo() -> Option<Server> {
    if !have_peer("python3") {
        return None;
    }
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(peer_script("scripts/py-echo.py"));
    Some(spawn_listening(cmd))
}

#[test]
fn ping_sonde_echo_closed_loop() {
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&["ping", &echo.addr, "--count", "2000", "--inflight", "16"]);
    assert_eq!(u(&s, "sent"), 2000);
    assert_eq!(u(&s, "received"), 2000);
    assert_eq!(f(&s, "loss_pct"), 0.0);
    for key in ["mismatched", "foreign", "duplicates", "not_sent", "late"] {
        assert_eq!(u(&s, key), 0, "{key}");
    }
    assert_eq!(s["mode"], "window");
    assert!(
        (1..=16).contains(&u(&s, "peak_in_flight")),
        "the window caps it: {s}"
    );
    let rtt = &s["rtt"];
    assert_eq!(u(rtt, "count"), 2000);
    assert!(f(rtt, "min_us") > 0.0);
    assert!(f(rtt, "min_us") <= f(rtt, "p50_us"));
    assert!(f(rtt, "p50_us") <= f(rtt, "p99_us"));
    assert!(f(rtt, "p99_us") <= f(rtt, "max_us") * 1.001);
    assert!(s["jitter_us"].as_f64().is_some());
    assert!(
        s["rtt_from_intended"].is_null(),
        "closed loop has no schedule"
    );
}

#[test]
fn ping_sonde_echo_over_ipv6_at_fixed_rate() {
    let echo = sonde_echo("[::1]:0");
    assert!(echo.addr.starts_with("[::1]:"), "{}", echo.addr);
    let s = run_json(&["ping", &echo.addr, "--rate", "2000", "--count", "1000"]);
    assert_eq!(u(&s, "received"), 1000);
    assert_eq!(s["mode"], "rate");
    assert_eq!(f(&s, "rate_pps"), 2000.0);
    // 1000 probes at 2000/s take about half a second.
    assert!(f(&s, "duration_s") > 0.45 && f(&s, "duration_s") < 5.0);
    assert!(s["rtt_from_intended"]["p50_us"].as_f64().unwrap() > 0.0);
    assert!(s["schedule_lag"]["max_us"].as_f64().is_some());
}

#[test]
fn largest_ipv6_probe_round_trips() {
    let echo = sonde_echo("[::1]:0");
    let s = run_json(&[
        "ping", &echo.addr, "--size", "65527", "--count", "5", "-w", "1",
    ]);
    assert_eq!(u(&s, "received"), 5);
    assert_eq!(u(&s, "size_bytes"), 65527);
}

#[test]
fn ping_python_stdlib_echo_one_at_a_time() {
    let Some(echo) = python_echo() else { return };
    let s = run_json(&[
        "ping",
        &echo.addr,
        "--count",
        "300",
        "--inflight",
        "1",
        "--size",
        "1400",
    ]);
    assert_eq!(u(&s, "received"), 300);
    assert_eq!(u(&s, "mismatched"), 0);
}

#[test]
fn ping_socat_echo() {
    if !have_peer("socat") {
        return;
    }
    let port = free_port();
    // socat forks a child per peer: run it in its own process group and kill the group, and let
    // -T end idle children by themselves. Its stdio is closed so that no straggler holds the
    // test harness's output open.
    let socat = std::process::Command::new("socat")
        .args([
            "-T",
            "5",
            "-b65536",
            &format!("UDP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
            "PIPE",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("spawn socat");
    let group = KillGroupOnDrop(socat);
    let addr = format!("127.0.0.1:{port}");
    wait_for_echo(&addr);
    let s = run_json(&["ping", &addr, "--count", "200", "--inflight", "1"]);
    drop(group);
    assert_eq!(u(&s, "received"), 200, "{s}");
    assert_eq!(u(&s, "mismatched"), 0);
}

#[test]
fn fixed_answer_server_is_mismatched_not_received() {
    let server = odd_echo("fixed");
    let s = run_json(&[
        "ping",
        &server.addr,
        "--count",
        "5",
        "--inflight",
        "1",
        "--timeout",
        "100ms",
    ]);
    assert_eq!(u(&s, "received"), 0);
    assert_eq!(u(&s, "mismatched"), 5);
    assert_eq!(u(&s, "lost"), 5);
    assert_eq!(f(&s, "loss_pct"), 100.0);
    assert_eq!(u(&s, "foreign"), 0);
}

#[test]
fn truncated_and_altered_echoes_are_mismatched() {
    for mode in ["truncate", "alter"] {
        let server = odd_echo(mode);
        let s = run_json(&[
            "ping",
            &server.addr,
            "--count",
            "20",
            "--rate",
            "200",
            "--timeout",
            "100ms",
        ]);
        assert_eq!(u(&s, "received"), 0, "{mode}: {s}");
        assert_eq!(u(&s, "mismatched"), 20, "{mode}");
        assert_accounted(&s);
    }
}

#[test]
fn duplicated_replies_are_counted_once_as_received() {
    let server = odd_echo("dup");
    let s = run_json(&["ping", &server.addr, "--count", "100", "--rate", "500"]);
    assert_eq!(u(&s, "received"), 100);
    // The run ends with the last first reply; that probe's second copy may come after.
    assert!((99..=100).contains(&u(&s, "duplicates")), "{s}");
    assert_eq!(u(&s["rtt"], "count"), 100, "duplicates add no RTT samples");
    assert_accounted(&s);
}

#[test]
fn swapped_replies_are_reordered() {
    let server = odd_echo("swap");
    let s = run_json(&["ping", &server.addr, "--count", "100", "--rate", "500"]);
    assert_eq!(u(&s, "received"), 100);
    // Each even-numbered probe comes back after the odd one that follows it.
    assert_eq!(u(&s, "reordered"), 50);
}

#[test]
fn replies_after_the_timeout_are_late_not_received_nor_lost() {
    let server = odd_echo("delay");
    let s = run_json(&[
        "ping",
        &server.addr,
        "--count",
        "50",
        "--rate",
        "100",
        "--timeout",
        "100ms",
    ]);
    // Every 5th reply comes 150 ms late. The run ends when the last probe's timeout fires, so
    // replies to probes sent in the last 50 ms come after the pinger has left: they stay lost.
    assert_eq!(u(&s, "received"), 40, "{s}");
    assert_eq!(u(&s, "late") + u(&s, "lost"), 10);
    assert!(u(&s, "late") >= 7, "{s}");
    assert_eq!(
        u(&s, "duplicates"),
        0,
        "a late reply is not also a duplicate"
    );
    assert_accounted(&s);
    assert!(
        f(&s["rtt"], "max_us") < 50_000.0,
        "late RTTs stay out of the histogram"
    );
}

#[test]
fn garbage_to_the_pinger_is_foreign_and_harmless() {
    let echo = sonde_echo("127.0.0.1:0");
    let mut ping = sonde()
        .args(["ping", &echo.addr, "--rate", "200", "--duration", "1500ms"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(ping.stdout.take().unwrap());
    let mut header = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut header).unwrap();
    let port: u16 = header
        .split(" from ")
        .nth(1)
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|p| {
            p.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no local port in {header:?}"));
    let attacker = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = format!("127.0.0.1:{port}");
    let mut forged = vec![0u8; 64];
    forged[..4].copy_from_slice(b"SNDE");
    forged[4] = 1;
    let payloads: [&[u8]; 5] = [b"", b"x", &[0xff; 31], &forged, &[0u8; 9000]];
    for i in 0..50 {
        attacker
            .send_to(payloads[i % payloads.len()], &target)
            .unwrap();
        // Paced: a burst of large datagrams would overflow the receive buffer (a local drop,
        // not what this test is about).
        sleep(Duration::from_millis(2));
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let status = ping.wait().unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("foreign 50"), "{rest}");
    assert!(rest.contains("0.000% loss"), "{rest}");
}

#[test]
fn server_cut_and_restart_is_one_outage() {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let echo = sonde_echo(&bind);
    let ping = sonde()
        .args([
            "ping",
            &bind,
            "--rate",
            "200",
            "--duration",
            "3s",
            "--timeout",
            "200ms",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    sleep(Duration::from_millis(800));
    drop(echo);
    sleep(Duration::from_millis(1000));
    let _echo = sonde_echo(&bind);
    let out = ping.wait_with_output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outages = s["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{s}");
    let o = &outages[0];
    assert_eq!(o["cause"], "unreachable");
    assert_eq!(
        o["ongoing"], false,
        "probes after the restart were answered"
    );
    let (start, duration) = (f(o, "start_s"), f(o, "duration_s"));
    assert!((0.6..1.2).contains(&start), "{o}");
    assert!((0.7..1.6).contains(&duration), "{o}");
    // About 200 probes fell into the outage, and every lost probe of the run is in it.
    assert!(u(o, "lost") + u(o, "not_sent") >= 140, "{o}");
    assert_eq!(u(o, "lost"), u(&s, "lost"));
    // Answered before the cut (~160) and after the restart (~240), with room for a slow restart.
    assert!(u(&s, "received") >= 250, "{s}");
    assert!(u(&s, "unreachable") > 0);
    assert_accounted(&s);
}

#[test]
fn ctrl_c_prints_what_was_measured() {
    let echo = sonde_echo("127.0.0.1:0");
    // At a fixed rate the loop waits in epoll; one in flight, in its read (Ctrl-C reaches the
    // main thread, which is not the one reading).
    for (pace, expected) in [
        (["--rate", "100"], 30..=120),
        (["--inflight", "1"], 30..=u64::MAX),
    ] {
        // No count or duration: only Ctrl-C ends this one, so make sure it dies with the test.
        let mut ping = KillOnDrop(
            sonde()
                .args(["ping", &echo.addr])
                .args(pace)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        sleep(Duration::from_millis(700));
        let signalled = Instant::now();
        let (text, status) = signal_and_read(&mut ping.0, "INT");
        assert!(signalled.elapsed() < Duration::from_secs(2), "{pace:?}");
        assert!(status.success(), "{text}");
        assert!(text.contains("sonde ping statistics"), "{text}");
        assert!(text.contains("interrupted"), "{text}");
        let sent: u64 = text
            .lines()
            .find(|l| l.contains(" sent, "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!(expected.contains(&sent), "{text}");
        assert!(
            text.contains(&format!("{sent} received")),
            "replies drained: {text}"
        );
    }
}

#[test]
fn loopback_runs_with_no_setup() {
    for family in [&[][..], &["--ipv6"][..]] {
        let mut args = vec!["loopback", "--duration", "500ms", "--rate", "5000"];
        args.extend_from_slice(family);
        let s = run_json(&args);
        assert_eq!(u(&s, "received"), u(&s, "sent"), "{s}");
        assert!(u(&s, "sent") >= 2400, "{s}");
        assert!(s["target"]
            .as_str()
            .unwrap()
            .contains(if family.is_empty() {
                "127.0.0.1"
            } else {
                "[::1]"
            }));
    }
}

#[test]
fn few_probes_print_one_line_each() {
    let echo = sonde_echo("127.0.0.1:0");
    let out = run(&["ping", &echo.addr, "--count", "3", "--inflight", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for seq in 0..3 {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("seq={seq} rtt=")) && l.ends_with("ms len=64")),
            "{text}"
        );
    }
    assert!(text.contains("3 sent, 3 received, 0.000% loss"), "{text}");
}

#[test]
fn lost_probes_print_lost_lines() {
    let port = free_port();
    let out = run(&[
        "ping",
        &format!("127.0.0.1:{port}"),
        "--count",
        "2",
        "--inflight",
        "1",
        "--timeout",
        "50ms",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("seq=0 LOST"), "{text}");
    assert!(text.contains("seq=1 LOST"), "{text}");
    assert!(text.contains("0 received, 100.000% loss"), "{text}");
}

#[test]
fn closed_stdout_does_not_panic() {
    let mut child = sonde()
        .args(["loopback", "--count", "5000", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success());
}

#[test]
fn summary_reports_granted_buffers_and_kernel_timestamps() {
    let s = run_json(&[
        "loopback", "--count", "100", "--rcvbuf", "64K", "--sndbuf", "1M",
    ]);
    let socket = &s["socket"];
    // Linux reports twice the request (its bookkeeping included).
    assert_eq!(u(socket, "rcvbuf_bytes"), 128 * 1024, "{socket}");
    assert_eq!(u(socket, "sndbuf_bytes"), 2 * 1024 * 1024, "{socket}");
    assert_eq!(socket["rx_timestamps"], "kernel");
    assert_eq!(u(&s, "local_drops"), 0);
    let s = run_json(&["loopback", "--count", "100", "--timestamps", "user"]);
    assert_eq!(s["socket"]["rx_timestamps"], "user space");
    assert_eq!(u(&s, "received"), u(&s, "sent"));
}

#[test]
fn overflowing_our_own_receive_buffer_is_reported_as_local_drops() {
    // 64 replies of 8972 bytes in flight against a receive buffer of a few KiB.
    let s = run_json(&[
        "loopback",
        "--count",
        "2000",
        "--inflight",
        "64",
        "--size",
        "8972",
        "--rcvbuf",
        "4K",
        "--timeout",
        "50ms",
    ]);
    let drops = u(&s, "local_drops");
    assert!(drops > 0, "{s}");
    // Loopback loses nothing by itself: every lost probe was dropped by our own socket.
    assert!(u(&s, "lost") <= drops, "{s}");
    assert!(u(&s, "lost") > 0, "{s}");
}

#[test]
fn busy_poll_runs_both_sides() {
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", "127.0.0.1:0", "--busy-poll"]);
    let echo = spawn_listening(cmd);
    // With user-space times neither side has a control message to read: each reads a lone
    // datagram with `recvfrom`, and the counts are the same.
    for times in ["kernel", "user"] {
        let args = [
            "--count",
            "2000",
            "-w",
            "1",
            "--busy-poll",
            "--timestamps",
            times,
        ];
        let s = run_json(&[&["ping", &echo.addr][..], &args].concat());
        assert_eq!((u(&s, "received"), u(&s, "foreign")), (2000, 0), "{s}");
    }

    // Spinning reads the sockets directly; what only epoll reports still gets through. ICMP
    // errors from a port where nothing listens:
    let closed = format!("127.0.0.1:{}", free_port());
    let s = run_json(&[
        "ping",
        &closed,
        "--count",
        "50",
        "--rate",
        "1000",
        "--timeout",
        "100ms",
        "--busy-poll",
    ]);
    assert_eq!(u(&s, "lost"), 50, "{s}");
    assert!(u(&s, "unreachable") > 0, "{s}");
    // And signals: the spinning echo stops on SIGINT and prints its counters.
    let mut echo = echo;
    signal(&echo.child, "INT");
    let mut text = String::new();
    echo.stdout.read_to_string(&mut text).unwrap();
    assert!(echo.child.wait().unwrap().success(), "{text}");
    assert!(
        text.contains("4000 of 4000 datagrams echoed (256000 of 256000 bytes) to 2 peers"),
        "{text}"
    );
}

#[test]
fn flows_are_reported_each_and_in_total() {
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", "127.0.0.1:0", "--threads", "2"]);
    let echo = spawn_listening(cmd);
    let s = run_json(&[
        "ping", &echo.addr, "--flows", "3", "--count", "500", "-w", "8",
    ]);
    let flows = s["flows"].as_array().expect("per-flow summaries");
    assert_eq!(flows.len(), 3);
    assert_eq!(u(&s, "sent"), 1500);
    assert_eq!(u(&s, "received"), 1500);
    let locals: std::collections::HashSet<_> = flows.iter().map(|f| f["local"].clone()).collect();
    assert_eq!(locals.len(), 3, "each flow has its own socket");
    for f in flows {
        assert_eq!(u(f, "received"), 500);
        assert!(f["flows"].is_null(), "no nesting");
    }
    // The total's histogram holds every flow's samples.
    assert_eq!(u(&s["rtt"], "count"), 1500);
    let min = flows
        .iter()
        .map(|flow| f(&flow["rtt"], "min_us"))
        .fold(f64::MAX, f64::min);
    assert_eq!(f(&s["rtt"], "min_us"), min);
}

#[test]
fn echo_threads_share_one_address() {
    // --json prints no banner: bind a known port and probe for readiness.
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut echo = KillOnDrop(
        sonde()
            .args(["echo", "--bind", &addr, "--threads", "2", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    wait_for_echo(&addr);
    let s = run_json(&["ping", &addr, "--flows", "4", "--count", "300", "-w", "4"]);
    assert_eq!(u(&s, "received"), 1200);
    let (out, status) = signal_and_read(&mut echo.0, "INT");
    assert!(status.success());
    let e: serde_json::Value = serde_json::from_str(&out).unwrap();
    // Every datagram was served by one of the two sockets: the readiness probe and 1200 probes.
    assert_eq!(u(&e, "datagrams"), 1201, "{e}");
}

/// A window of probes to sonde's echo over loopback, with segmentation offload as asked.
fn offload_run(
    gso: sonde::config::Gso,
    gro: bool,
) -> (sonde::model::PingSummary, sonde::model::EchoSummary) {
    use sonde::config::{EchoConfig, Pace, PingConfig};
    let server = sonde::run::EchoServer::start(EchoConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..EchoConfig::default()
    })
    .unwrap();
    let mut cfg = PingConfig::new(server.local_addr());
    cfg.count = Some(20_000);
    cfg.pace = Pace::Window;
    cfg.inflight = Some(64);
    cfg.size = 200;
    cfg.gso = gso;
    cfg.gro = gro;
    let ping = sonde::run::ping(cfg).unwrap();
    (ping, server.stop().unwrap())
}

#[test]
fn runs_of_probes_sent_with_gso_are_echoed_and_matched_one_by_one() {
    use sonde::config::Gso;
    // auto: GSO toward loopback; the echo takes each run as one buffer (GRO) and answers it as one.
    let (ping, echo) = offload_run(Gso::Auto, false);
    assert_eq!(
        ping.socket.batching,
        sonde::model::Batching::Gso,
        "{ping:?}"
    );
    assert!(!ping.socket.gro);
    let c = &ping.counters;
    assert_eq!((c.sent, c.received), (20_000, 20_000), "{c:?}");
    assert_eq!((c.mismatched, c.duplicates, c.foreign), (0, 0, 0), "{c:?}");
    assert_eq!(echo.datagrams, 20_000);
    assert_eq!(echo.bytes_out, echo.bytes);
    assert!(echo.gro);
    assert!(echo.coalesced > 0, "no run arrived coalesced: {echo:?}");
    assert_eq!(ping.rtt.as_ref().unwrap().count, 20_000);

    // Replies taken coalesced too: every probe still matched on its own.
    let (ping, echo) = offload_run(Gso::Auto, true);
    assert!(ping.socket.gro);
    let c = &ping.counters;
    assert_eq!(
        (c.sent, c.received, c.mismatched),
        (20_000, 20_000, 0),
        "{c:?}"
    );
    assert!(echo.coalesced > 0);

    // Off: a datagram per message, and nothing to coalesce.
    let (ping, echo) = offload_run(Gso::Off, false);
    assert_eq!(ping.socket.batching, sonde::model::Batching::Sendmmsg);
    assert_eq!(ping.counters.received, 20_000);
    assert_eq!(echo.coalesced, 0);
}

#[test]
fn gso_probes_to_an_echo_without_gro_are_cut_up_by_the_kernel() {
    let Some(echo) = python_echo() else { return };
    let s = run_json(&[
        "ping",
        &echo.addr,
        "--count",
        "5000",
        "--inflight",
        "64",
        "--size",
        "300",
    ]);
    assert_eq!(s["socket"]["batching"], "gso");
    assert_eq!(u(&s, "received"), 5000, "{s}");
    assert_eq!(u(&s, "mismatched"), 0);
}
