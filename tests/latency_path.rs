//! The lowest-overhead latency path (issue #15): `--connect`, a connected pinger socket; a
//! ping-pong's probe sent from the read that waits for its reply, and booked after it.

mod common;

use common::*;
use std::time::{Duration, Instant};

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

/// What tcpdump saw leave on the loopback device: (capture time in ns since the Unix epoch,
/// the sonde probe's sequence number), for every sonde probe in the capture at `pcap`.
fn probes_on_the_wire(pcap: &std::path::Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(pcap).unwrap();
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    // Little-endian pcap with nanosecond times (--time-stamp-precision=nano), Ethernet framing.
    assert_eq!(word(0), 0xa1b2_3c4d, "not a nanosecond pcap");
    assert_eq!(word(20), 1, "not Ethernet framing");
    let mut probes = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let ns = u64::from(word(at)) * 1_000_000_000 + u64::from(word(at + 4));
        let captured = word(at + 8) as usize;
        let frame = &bytes[at + 16..(at + 16 + captured).min(bytes.len())];
        at += 16 + captured;
        // Ethernet (14), IPv4 (its IHL), UDP (8), then the probe: magic "SNDE"? at 0, seq at 16.
        let ip = 14;
        let Some(&version_ihl) = frame.get(ip) else {
            continue;
        };
        let udp = ip + usize::from(version_ihl & 0x0f) * 4;
        let probe = udp + 8;
        if let Some(seq) = frame.get(probe + 16..probe + 24) {
            probes.push((ns, u64::from_be_bytes(seq.try_into().unwrap())));
        }
    }
    probes
}

/// `tcpdump` on the loopback device for UDP to `port`, until dropped; waits until it listens.
struct Capture {
    child: std::process::Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(port: u16, file: std::path::PathBuf) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new("tcpdump")
            .args(["-i", "lo", "-n", "-U", "-s", "128", "-B", "16384"])
            .args(["--time-stamp-precision=nano", "-w"])
            .arg(&file)
            .args(["udp", "and", "dst", "port", &port.to_string()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("listening on") {
            line.clear();
        }
        assert!(line.contains("listening on"), "tcpdump: {line}");
        Self { child, file }
    }

    /// Stops the capture and reads it.
    fn probes(mut self) -> Vec<(u64, u64)> {
        signal(&self.child, "INT");
        self.child.wait().unwrap();
        probes_on_the_wire(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Each answered probe's send time, ns since the run's start, from `--export-csv`'s rows.
fn sent_times(csv: &str) -> Vec<(u64, u64)> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            let answered = matches!(cols[5], "received" | "reordered");
            answered.then(|| (cols[1].parse().unwrap(), cols[3].parse().unwrap()))
        })
        .collect()
}

/// Pings `target` (`ping` arguments) while tcpdump watches `port`; returns the summary and, for
/// each answered probe the capture saw, how far its reported send time is from where the wire
/// saw it, in ns, sorted. The capture's clock and sonde's differ by one constant, the run's
/// start, which the median stands for.
fn send_times_against_the_wire(
    target: &str,
    port: u16,
    ping: &[&str],
) -> (serde_json::Value, Vec<u64>) {
    let dir = std::env::temp_dir().join(format!("sonde-tx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let capture = Capture::start(port, dir.join("probes.pcap"));
    let csv = dir.join("probes.csv");
    let csv_arg = csv.to_str().unwrap();
    let s = run_json(&[&["ping", target, "--export-csv", csv_arg][..], ping].concat());
    let wire: std::collections::HashMap<u64, u64> = capture
        .probes()
        .into_iter()
        .map(|(ns, seq)| (seq, ns))
        .collect();
    let sent = sent_times(&std::fs::read_to_string(&csv).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sent.len() as u64, u(&s, "received"), "{s}");
    // A GSO run crosses the device as one buffer, headed by its first probe's header.
    let mut offsets: Vec<i64> = sent
        .iter()
        .filter_map(|(seq, ns)| wire.get(seq).map(|w| *w as i64 - *ns as i64))
        .collect();
    assert!(
        offsets.len() * 4 >= sent.len(),
        "{} of {} probes seen on the wire",
        offsets.len(),
        sent.len()
    );
    offsets.sort_unstable();
    let median = offsets[offsets.len() / 2];
    let mut off: Vec<u64> = offsets.iter().map(|o| o.abs_diff(median)).collect();
    off.sort_unstable();
    (s, off)
}

/// The share of `off` (sorted) up to `ns`.
fn share_within(off: &[u64], ns: u64) -> f64 {
    off.partition_point(|&o| o <= ns) as f64 / off.len() as f64
}

/// `--timestamps kernel` takes each probe's send time from the kernel (`SO_TIMESTAMPING`), and
/// the time is that probe's: tcpdump, a receiver that is not sonde, sees most answered probes
/// cross the loopback device within 5 µs of their reported send time and none half a spacing off, where a
/// time given to the probe before or after would be off by the probes' spacing (500 µs at
/// 2 000/s, 20 µs at 50 000/s); through a relay that loses and reorders, in GSO runs, and at
/// 200 000 probes/s, where a time dropped with the replies (a full receive buffer) loses no
/// probe. (On this VM either clock source sometimes sees the wire tens of µs later: the
/// hypervisor's pauses.)
#[test]
fn kernel_send_times_are_their_probes_as_the_wire_saw_them() {
    if !have_peer("tcpdump") {
        return;
    }
    let echo = sonde_echo("127.0.0.1:0");
    let mut cmd = sonde();
    cmd.args(["impair", "--listen", "127.0.0.1:0", "--forward", &echo.addr])
        .args([
            "--loss",
            "10%",
            "--delay",
            "2ms",
            "--reorder",
            "25%",
            "--seed",
            "7",
        ]);
    let relay = spawn_listening(cmd);
    let port: u16 = relay.addr.rsplit(':').next().unwrap().parse().unwrap();
    let ping = ["-r", "2000", "-c", "2000", "-t", "500ms"];
    let (s, off) = send_times_against_the_wire(&relay.addr, port, &ping);
    assert!(u(&s, "lost") > 100 && u(&s, "reordered") > 50, "{s}");
    assert!(
        off[off.len() - 1] < 250_000 && share_within(&off, 5_000) >= 0.5,
        "{off:?}"
    );
    let tx = &s["socket"]["tx_stamps"];
    assert_eq!(s["socket"]["tx_timestamps"], "kernel", "{s}");
    assert_eq!(
        (u(tx, "round_trips"), u(tx, "unmatched")),
        (u(&s, "received"), 0),
        "{s}"
    );
    drop(relay);
    let port: u16 = echo.addr.rsplit(':').next().unwrap().parse().unwrap();
    let ping = ["-r", "50000", "-d", "1s", "-t", "200ms"];
    let (s, off) = send_times_against_the_wire(&echo.addr, port, &ping);
    assert_eq!(s["socket"]["batching"], "gso", "{s}");
    assert!(share_within(&off, 5_000) >= 0.5, "{off:?}");
    // At 200 000/s, and with a receive buffer too small for it: the error queue shares the
    // receive buffer, so when replies are dropped for want of room times are too. Such a probe
    // is timed from user space; none is lost for it.
    for rcvbuf in ["8M", "8K"] {
        let ping = [
            "ping", &echo.addr, "-r", "200000", "-d", "1s", "--rcvbuf", rcvbuf,
        ];
        let s = run_json(&ping);
        let tx = &s["socket"]["tx_stamps"];
        assert_eq!(u(tx, "unmatched"), 0, "{s}");
        let timed = u(tx, "round_trips") + u(tx, "round_trips_without");
        assert_eq!(timed, u(&s, "received"), "{s}");
        assert_eq!(u(&s, "received") + u(&s, "lost"), u(&s, "sent"), "{s}");
        if u(&s, "local_drops") == 0 {
            assert_eq!(u(tx, "missed"), 0, "{s}");
        }
    }
    // User-space send times when asked for, and in a closed loop of several in flight.
    for args in [
        ["-r", "1000", "--timestamps", "user"],
        ["-w", "64", "--timestamps", "kernel"],
    ] {
        let s = run_json(&[&["ping", &echo.addr, "-c", "1000"][..], &args].concat());
        assert_eq!(s["socket"]["tx_timestamps"], "user space", "{s}");
        assert!(s["socket"]["tx_stamps"].is_null(), "{s}");
    }
    let s = run_json(&["ping", &echo.addr, "-c", "1000", "-w", "1"]);
    assert_eq!(s["socket"]["tx_timestamps"], "kernel", "{s}");
    // Of several flows (loopback's two), the total counts every flow's round trips.
    let s = run_json(&["loopback", "-c", "1000", "-r", "10000"]);
    let tx = &s["socket"]["tx_stamps"];
    assert_eq!(u(tx, "round_trips"), u(&s, "received"), "{s}");
}

/// `--timestamps hardware` asks the interface toward the target what it can stamp, and refuses
/// with the reason (exit 2, naming the flag and the interface) as ethtool, which is not sonde,
/// reads the same device: the loopback device stamps in software only.
#[test]
fn hardware_times_are_refused_with_the_interfaces_own_answer() {
    if !have_peer("ethtool") {
        return;
    }
    let ethtool = std::process::Command::new("ethtool")
        .args(["-T", "lo"])
        .output()
        .unwrap();
    let caps = String::from_utf8_lossy(&ethtool.stdout);
    assert!(caps.contains("software-transmit"), "{caps}");
    let in_hardware = caps.contains("hardware-transmit");
    let out = run(&["ping", "127.0.0.1:9", "-c", "1", "--timestamps", "hardware"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--timestamps") && err.contains("lo, the interface toward"),
        "{err}"
    );
    let said = if in_hardware {
        "does not read hardware times yet"
    } else {
        "does not stamp packets in hardware"
    };
    assert!(err.contains(said), "ethtool: {caps}\nsonde: {err}");
    // An interface that is not there is named as such.
    let out = run(&[
        "ping",
        "127.0.0.1:9",
        "--timestamps",
        "hardware",
        "--interface",
        "nosuch0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot ask nosuch0"), "{err}");
    let out = run(&["echo", "--bind", "127.0.0.1:0", "--timestamps", "hardware"]);
    assert_eq!(out.status.code(), Some(2));
}

/// Namespaces `a` — `b` whose veth from `a` sends at `rate` (a token bucket holding up to 1 MB):
/// a pinger in `a` with a small send buffer finds it full.
fn throttled_pair(tag: &str, rate: &str) -> Option<NetnsPair> {
    let pair = NetnsPair::create(tag)?;
    let tbf = ["dev", "va", "root", "tbf", "rate", rate, "burst", "10k"];
    let added = std::process::Command::new("ip")
        .args(["netns", "exec", &pair.a, "tc", "qdisc", "add"])
        .args(tbf)
        .args(["limit", "1000000"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(added, "tc qdisc add {tbf:?} failed");
    Some(pair)
}

/// `sonde ping ARGS` in namespace `a` of `pair`, killed after 20 s (a stall fails the test
/// rather than hanging it); its summary.
fn ping_in_a(pair: &NetnsPair, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new("timeout")
        .args([
            "20",
            "ip",
            "netns",
            "exec",
            &pair.a,
            env!("CARGO_BIN_EXE_sonde"),
        ])
        .args(["ping", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "sonde ping {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Room to send again after a full buffer: the token bucket holds the probes, a 4 KiB send
/// buffer fills, and sending must go on once it drains. A blocking pinger asks epoll for
/// writability only while blocked (every send on loopback would be an edge waking it for
/// nothing); a busy-polling one keeps its socket out of epoll (a socket in an epoll set costs
/// every datagram sent to it a wake-up in the sender's path), so it must find room by itself.
#[test]
fn a_pinger_whose_send_buffer_fills_sends_again_once_there_is_room() {
    let Some(pair) = throttled_pair("full", "10mbit") else {
        return;
    };
    for mode in [&[][..], &["--busy-poll"]] {
        let mut cmd = pair.exec(&pair.b);
        cmd.args(["echo", "--bind", "198.18.0.2:9999"]).args(mode);
        let echo = spawn_listening(cmd);
        // 5 000 probes due, about 1 300 of them through the bucket in the time (a pinger
        // waiting for room for good sends under a hundred).
        let args = ["198.18.0.2:9999", "--rate", "20000", "--size", "200"];
        let tail = ["--duration", "250ms", "--sndbuf", "4K", "--timeout", "1s"];
        let s = ping_in_a(&pair, &[&args[..], &tail, mode].concat());
        drop(echo);
        let (sent, not_sent) = (u(&s, "sent"), u(&s, "not_sent"));
        assert!(not_sent > 0, "{mode:?}: the send buffer never filled: {s}");
        assert!(
            sent > 500,
            "{mode:?}: sending did not go on after the buffer filled: {s}"
        );
        assert_eq!(u(&s, "received"), sent, "{mode:?}: {s}");
    }
}

/// A socket that never drains (here a bucket filling at 1 kbit/s) does not hold a fixed-rate
/// run past its duration, spinning or not: the probes still due go unsent.
#[test]
fn a_send_buffer_that_never_drains_does_not_outlast_the_duration() {
    let Some(pair) = throttled_pair("stuck", "1kbit") else {
        return;
    };
    for mode in [&[][..], &["--busy-poll"]] {
        let started = std::time::Instant::now();
        let args = [
            "198.18.0.2:9",
            "--rate",
            "2000",
            "--size",
            "200",
            "--duration",
            "500ms",
        ];
        let tail = ["--sndbuf", "4K", "--timeout", "200ms"];
        let s = ping_in_a(&pair, &[&args[..], &tail, mode].concat());
        assert!(started.elapsed() < Duration::from_secs(5), "{mode:?}: {s}");
        assert!(
            u(&s, "not_sent") > 0,
            "{mode:?}: the buffer never filled: {s}"
        );
        assert!(u(&s, "sent") < 500, "{mode:?}: {s}");
    }
}

/// The other thing epoll told a pinger: send times waiting on the error queue. Those of
/// answered probes are read with their replies; those of probes never answered must be read
/// too, or they would pile up (and, past a few thousand, be given up as missed).
#[test]
fn a_spinning_pinger_reads_the_send_times_of_probes_never_answered() {
    // A sink that never reads: no answer, and no ICMP error either.
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sink.local_addr().unwrap().to_string();
    let s = run_json(&[
        "ping",
        &addr,
        "--busy-poll",
        "--rate",
        "10000",
        "--count",
        "10000",
        "--timeout",
        "100ms",
    ]);
    assert_eq!((u(&s, "sent"), u(&s, "lost")), (10_000, 10_000), "{s}");
    assert_eq!(s["socket"]["tx_timestamps"], "kernel", "{s}");
    let tx = &s["socket"]["tx_stamps"];
    assert_eq!((u(tx, "missed"), u(tx, "unmatched")), (0, 0), "{s}");
    drop(sink);
}

#[test]
fn a_ping_pong_books_every_probe_and_times_each_by_the_kernel() {
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&["ping", &echo.addr, "--count", "500", "--inflight", "1"]);
    for (key, want) in [("sent", 500), ("received", 500), ("peak_in_flight", 1)] {
        assert_eq!(u(&s, key), want, "{key}: {s}");
    }
    assert_eq!(s["socket"]["tx_timestamps"], "kernel", "{s}");
    let stamps = &s["socket"]["tx_stamps"];
    assert_eq!(stamps["round_trips"], 500, "{s}");
    for key in ["round_trips_without", "missed", "unmatched"] {
        assert_eq!(stamps[key], 0, "{key}: {s}");
    }
}

#[test]
fn a_ping_pong_to_a_silent_target_times_out_each_probe_in_turn() {
    // Reads nothing, answers nothing, refuses nothing: only each probe's timeout ends it.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    // (Kernel send times raise an event of their own; user-space ones do not.)
    for stamps in ["user", "kernel"] {
        let started = Instant::now();
        let out = std::process::Command::new("timeout")
            .args(["10", env!("CARGO_BIN_EXE_sonde"), "ping", &addr, "--json"])
            .args(["--count", "4", "--inflight", "1", "--timeout", "100ms"])
            .args(["--timestamps", stamps])
            .output()
            .expect("run timeout");
        let took = started.elapsed();
        assert!(out.status.success(), "{stamps}: {out:?}");
        let s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
        assert_eq!((u(&s, "sent"), u(&s, "lost")), (4, 4), "{stamps}: {s}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(5),
            "{stamps}: four timeouts of 100 ms one after another took {took:?}"
        );
    }
}

#[test]
fn a_one_thread_echo_stops_at_once_on_each_signal_idle_or_right_after_traffic() {
    // Such an echo waits in its read with no cap: only the signal can end that wait, and one
    // that lands between two reads must still be seen.
    for (sig, traffic) in [
        ("INT", false),
        ("TERM", false),
        ("INT", true),
        ("TERM", true),
    ] {
        let mut echo = json_server(&["echo", "--bind", "127.0.0.1:0"]);
        if traffic {
            let s = run_json(&["ping", &echo.addr, "--count", "2000", "--inflight", "1"]);
            assert_eq!(u(&s, "received"), 2000, "{s}");
        }
        signal(&echo.child, sig);
        let started = Instant::now();
        let status = loop {
            if let Some(status) = echo.child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(3) {
                let _ = echo.child.kill();
                panic!("SIG{sig} (traffic before: {traffic}): still running after 3 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(status.success(), "SIG{sig}: {status}");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut echo.stdout, &mut out).unwrap();
        let counters: serde_json::Value = serde_json::from_str(out.lines().last().unwrap())
            .unwrap_or_else(|e| panic!("{e}: {out}"));
        let want = if traffic { 2000 } else { 0 };
        assert_eq!(u(&counters, "datagrams"), want, "{counters}");
    }
}
