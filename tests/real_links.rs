//! What real links need, checked on the wire: a reflector bound to a wildcard address answers
//! from the address it was asked at (on loopback across 127.0.0.0/8, and in namespaces where the
//! reflector's interface has a second address).

mod common;

use common::*;

/// An echo on the wildcard `bind` (port 0), limits off (it is reachable from the network, so
/// they would be on); returns it and its port.
fn wildcard_echo(bind: &str, extra: &[&str]) -> (Server, String) {
    let mut cmd = sonde();
    cmd.args(["echo", "--bind", bind])
        .args(["--limit-per-source", "off", "--limit-total", "off"])
        .args(extra);
    let echo = spawn_listening(cmd);
    let port = echo.addr.rsplit(':').next().unwrap().to_string();
    (echo, port)
}

#[test]
fn a_wildcard_echo_answers_from_each_loopback_address_it_is_asked_at() {
    let (_echo, port) = wildcard_echo("0.0.0.0:0", &[]);
    for (target, gso) in [
        ("127.0.0.2", "off"),
        ("127.0.0.3", "on"),
        ("127.1.2.3", "auto"),
    ] {
        let addr = format!("{target}:{port}");
        // A closed-loop window: replies come in batches, and with GSO in runs answered as runs.
        let s = run_json(&[
            "ping",
            &addr,
            "--inflight",
            "64",
            "-c",
            "20000",
            "--gso",
            gso,
        ]);
        assert_eq!(u(&s, "received"), 20_000, "{target}: {s}");
        assert_eq!(
            u(&s, "foreign"),
            0,
            "{target}: answered from elsewhere: {s}"
        );
        // One at a time too (the lone-reply path).
        let s = run_json(&["ping", &addr, "-c", "20", "-r", "200"]);
        assert_eq!((u(&s, "received"), u(&s, "foreign")), (20, 0), "{s}");
    }
}

#[test]
fn a_wildcard_stamp_reflector_and_an_ipv6_echo_answer_from_the_address_asked() {
    let (_stamp, port) = wildcard_echo("0.0.0.0:0", &["--wire", "stamp"]);
    let s = run_json(&[
        "ping",
        &format!("127.0.0.7:{port}"),
        "--wire",
        "stamp",
        "-c",
        "500",
        "-r",
        "5000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "foreign")), (500, 0), "{s}");
    let (_echo, port) = wildcard_echo("[::]:0", &[]);
    // IPv4 to an IPv6 wildcard arrives v4-mapped, and must go back from the same address.
    for target in ["[::1]", "127.0.0.8"] {
        let target = format!("{target}:{port}");
        let s = run_json(&["ping", &target, "--inflight", "16", "-c", "2000"]);
        assert_eq!(
            (u(&s, "received"), u(&s, "foreign")),
            (2000, 0),
            "{target}: {s}"
        );
    }
}

#[test]
fn a_reflector_answers_from_a_secondary_address_across_a_veth() {
    let Some(pair) = NetnsPair::create("secondary") else {
        return;
    };
    // The reflector's interface gets a second address, in another network: answers to the
    // pinger (198.18.0.1) would leave from the primary (198.18.0.2) if the routing chose.
    assert!(ip(&[
        "-n",
        &pair.b,
        "addr",
        "add",
        "198.18.1.2/24",
        "dev",
        "vb"
    ]));
    assert!(ip(&[
        "-n",
        &pair.a,
        "route",
        "add",
        "198.18.1.0/24",
        "dev",
        "va"
    ]));
    for wire in ["sonde", "stamp"] {
        let mut cmd = pair.exec(&pair.b);
        cmd.args(["echo", "--bind", "0.0.0.0:9999", "--wire", wire])
            .args(["--limit-per-source", "off", "--limit-total", "off"]);
        let _echo = spawn_listening(cmd);
        for target in ["198.18.1.2:9999", "198.18.0.2:9999"] {
            let out = pair
                .exec(&pair.a)
                .args([
                    "ping", target, "--wire", wire, "-c", "200", "-r", "2000", "--json",
                ])
                .output()
                .unwrap();
            let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(u(&s, "received"), 200, "{wire} to {target}: {s}");
            assert_eq!(u(&s, "foreign"), 0, "{wire} to {target}: {s}");
        }
    }
}

/// tests/peers/header_sink.py on `addr`: what TTL and TOS `count` datagrams arrived with, as a
/// receiver that is not sonde sees them, after `send` has sent them to its port.
fn headers_seen(addr: &str, count: usize, send: impl FnOnce(&str)) -> serde_json::Value {
    use std::io::BufRead;
    if !have_peer("python3") {
        return serde_json::Value::Null;
    }
    let mut sink = std::process::Command::new("python3")
        .arg(peer_script("tests/peers/header_sink.py"))
        .args([addr, &count.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(sink.stdout.take().unwrap());
    let mut port = String::new();
    out.read_line(&mut port).unwrap();
    let target = if addr.contains(':') {
        format!("[{addr}]:{}", port.trim())
    } else {
        format!("{addr}:{}", port.trim())
    };
    send(&target);
    let mut seen = String::new();
    out.read_line(&mut seen).unwrap();
    sink.wait().unwrap();
    serde_json::from_str(&seen).unwrap_or_else(|e| panic!("{e}: {seen:?}"))
}

#[test]
fn ttl_dscp_and_ecn_go_out_as_asked_ipv4_and_ipv6() {
    for (addr, ttl, dscp, ecn, tos) in [
        ("127.0.0.1", "7", "ef", "ect1", 46 << 2 | 1),
        ("::1", "9", "af11", "ce", 10 << 2 | 3),
    ] {
        let seen = headers_seen(addr, 3, |target| {
            let out = run(&[
                "ping", target, "--ttl", ttl, "--dscp", dscp, "--ecn", ecn, "-c", "3", "-r", "100",
                "-t", "50ms", "-q",
            ]);
            assert!(out.status.success());
        });
        if seen.is_null() {
            return;
        }
        let ttl: u64 = ttl.parse().unwrap();
        assert_eq!(
            seen["ttl"],
            serde_json::json!([ttl, ttl, ttl]),
            "{addr}: {seen}"
        );
        assert_eq!(
            seen["tos"],
            serde_json::json!([tos, tos, tos]),
            "{addr}: {seen}"
        );
    }
}

#[test]
fn an_interface_is_used_when_it_exists_and_named_when_it_does_not() {
    for bind in ["[::1]:0", "127.0.0.1:0"] {
        let echo = sonde_echo(bind);
        let probe = ["-c", "20", "-r", "200"];
        let s = run_json(&[&["ping", &echo.addr, "--interface", "lo"][..], &probe].concat());
        assert_eq!(u(&s, "received"), 20, "{s}");
    }
    let echo = sonde_echo("127.0.0.1:0");
    let out = run(&["ping", &echo.addr, "--interface", "nosuch0", "-c", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--interface") && stderr.contains("nosuch0"),
        "{stderr}"
    );
    for (value, flag) in [("0", "--ttl"), ("256", "--ttl"), ("x", "--ttl")] {
        let out = run(&["ping", &echo.addr, flag, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn the_replies_tos_and_ttl_are_read_and_a_remark_is_told() {
    if !have_peer("python3") {
        return;
    }
    for addr in ["127.0.0.1", "::1"] {
        // An echo that answers with CS1 and CE (8 << 2 | 3) and a TTL of 50.
        let tos = (8 << 2 | 3).to_string();
        let (child, target) = python_peer("tests/peers/tos_echo.py", addr, &[&tos, "50"]);
        let echo = KillOnDrop(child);
        let s = run_json(&["ping", &target, "--dscp", "ef", "-c", "100", "-r", "1000"]);
        drop(echo);
        assert_eq!(u(&s, "received"), 100, "{s}");
        let h = &s["reply_headers"];
        assert_eq!(u(&h["dscp"], "8"), 100, "{addr}: {h}");
        assert_eq!(u(h, "ce"), 100, "{addr}: {h}");
        assert_eq!(u(h, "dscp_not_as_sent"), 100, "EF sent, CS1 back: {h}");
        assert_eq!(
            (
                u(&h["ttl"], "min"),
                u(&h["ttl"], "max"),
                u(&h["ttl"], "hops")
            ),
            (50, 50, 14),
            "{h}"
        );
    }
    // Without --dscp, --ecn or --ttl the headers are not read (a control message per receive).
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&["ping", &echo.addr, "-c", "5", "-r", "100"]);
    assert!(s.get("reply_headers").is_none(), "{s}");
}

/// The `too_big` part of a summary: (not sent, told by ICMP, path MTU, largest size).
fn too_big(s: &serde_json::Value) -> (u64, u64, u64, u64) {
    let t = &s["too_big"];
    (
        u(t, "not_sent"),
        u(t, "icmp"),
        u(t, "path_mtu_bytes"),
        u(t, "largest_size_bytes"),
    )
}

#[test]
fn df_probes_too_big_for_a_router_are_told_and_then_not_sent_ipv4_and_ipv6() {
    // The router's link toward b takes 1280-byte packets: it answers bigger ones that may not
    // be fragmented with ICMP, a receiver that is not sonde reading the DF bit on the wire.
    let Some(path) = RoutedPath::create("df", 1280, 1280) else {
        return;
    };
    let _echo = path.echo_in_b();
    for (b, largest) in [(RoutedPath::B4, 1252), (RoutedPath::B6, 1232)] {
        let target = if b.contains(':') {
            format!("[{b}]:9999")
        } else {
            format!("{b}:9999")
        };
        let probe = ["ping", &target, "-c", "5", "-r", "20", "-t", "300ms"];
        let (s, status) = path.json_from_a(&[&probe[..], &["--df", "--size", "1400"]].concat());
        assert_eq!(status, Some(0), "{s}");
        assert_eq!(u(&s, "received"), 0, "{target}: {s}");
        let (not_sent, icmp, mtu, fits) = too_big(&s);
        // The first probe leaves (the kernel knows no smaller MTU yet) and the router says why
        // it dropped it; the kernel refuses the rest, naming the MTU it learnt.
        assert_eq!(icmp, 1, "{target}: {s}");
        assert_eq!(not_sent, 4, "{target}: {s}");
        assert_eq!((mtu, fits), (1280, largest), "{target}: {s}");
        assert_eq!(u(&s, "unreachable"), 0, "too big is not unreachable: {s}");
        let fitting = largest.to_string();
        let (s, _) = path.json_from_a(&[&probe[..], &["--df", "--size", &fitting]].concat());
        assert_eq!(u(&s, "received"), 5, "{target} at {fitting} B: {s}");
        let t = &s["too_big"];
        assert_eq!((u(t, "not_sent"), u(t, "icmp")), (0, 0), "{s}");
        // Without --df the same big probes are fragmented and come back.
        let (s, _) = path.json_from_a(&[&probe[..], &["--size", "1400"]].concat());
        assert_eq!(u(&s, "received"), 5, "{target} fragmented: {s}");
        assert!(s.get("too_big").is_none(), "{s}");
    }
}

#[test]
fn pmtu_finds_the_routers_mtu_and_a_black_hole_below_the_kernels() {
    // A router that says "too big": the kernel learns 1280 and one size confirms it.
    let Some(path) = RoutedPath::create("pmtu", 1280, 1280) else {
        return;
    };
    let _echo = path.echo_in_b();
    for (target, largest) in [("198.18.0.6:9999", 1252), ("[2001:2:0:2::2]:9999", 1232)] {
        let (r, status) = path.json_from_a(&["ping", target, "--pmtu", "-t", "300ms"]);
        assert_eq!(status, Some(0), "{r}");
        assert_eq!(u(&r, "largest_size_bytes"), largest, "{target}: {r}");
        assert_eq!(u(&r, "path_mtu_bytes"), 1280, "{target}: {r}");
        assert_eq!(u(&r, "kernel_mtu_bytes"), 1280, "{target}: {r}");
        let steps = r["steps"].as_array().unwrap();
        assert_eq!(steps.last().unwrap()["outcome"], "back", "{r}");
        assert!(steps.len() <= 3, "the kernel's MTU should settle it: {r}");
    }
    drop(path);
    // A black hole: b's side takes 1400 bytes (veth lets 4 more through, room for a VLAN tag)
    // and drops the rest without a word, while every MTU a's kernel knows is 1500.
    let Some(path) = RoutedPath::create("hole", 1500, 1400) else {
        return;
    };
    let _echo = path.echo_in_b();
    for (target, headers) in [("198.18.0.6:9999", 28), ("[2001:2:0:2::2]:9999", 48)] {
        let (r, _) = path.json_from_a(&["ping", target, "--pmtu", "-t", "300ms"]);
        let mtu = u(&r, "path_mtu_bytes");
        assert!((1400..=1404).contains(&mtu), "{target}: {r}");
        assert_eq!(u(&r, "largest_size_bytes") + headers, mtu, "{r}");
        assert_eq!(u(&r, "kernel_mtu_bytes"), 1500, "{target}: {r}");
        let outcomes: Vec<_> = r["steps"].as_array().unwrap().iter().collect();
        let lost_above = outcomes
            .iter()
            .filter(|s| s["outcome"] == "lost")
            .all(|s| u(s, "size_bytes") > u(&r, "largest_size_bytes"));
        assert!(lost_above, "lost and too big told apart: {r}");
    }
}

#[test]
fn pmtu_on_loopback_and_bad_values_of_the_new_flags() {
    let echo = sonde_echo("127.0.0.1:0");
    let r = run_json(&["ping", &echo.addr, "--pmtu", "-t", "200ms"]);
    assert_eq!(u(&r, "largest_size_bytes"), 65_507, "{r}");
    let out = run(&["ping", &echo.addr, "--pmtu"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("path MTU 65535 B: --size 65507"), "{text}");
    // Nothing answering: a runtime fault naming what and where, status 1.
    let silent = format!("127.0.0.1:{}", free_port());
    let out = run(&["ping", &silent, "--pmtu", "-t", "100ms"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("path MTU") && stderr.contains(&silent),
        "{stderr}"
    );
    for (args, flag) in [
        (&["--pmtu", "--pmtu-probes", "0"][..], "--pmtu-probes"),
        (&["--pmtu-probes", "3"], "--pmtu"),
        (&["--pmtu", "-c", "3"], "--count"),
        (&["--tos", "256"], "--tos"),
        (&["--tos", "0xfg"], "--tos"),
        (&["--tos", "4", "--dscp", "ef"], "--tos"),
    ] {
        let out = run(&[&["ping", &echo.addr][..], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn a_raw_tos_byte_goes_out_as_given_ipv4_and_ipv6() {
    for addr in ["127.0.0.1", "::1"] {
        let seen = headers_seen(addr, 2, |target| {
            let out = run(&[
                "ping", target, "--tos", "0xb9", "-c", "2", "-r", "100", "-t", "50ms", "-q",
            ]);
            assert!(out.status.success());
        });
        if seen.is_null() {
            return;
        }
        assert_eq!(
            seen["tos"],
            serde_json::json!([0xb9, 0xb9]),
            "{addr}: {seen}"
        );
    }
}

/// A Python peer from tests/peers that binds `addr` port 0 and prints the port: the child and
/// the target to aim at.
fn python_peer(script: &str, addr: &str, args: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new("python3")
        .arg(peer_script(script))
        .arg(addr)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let target = if addr.contains(':') {
        format!("[{addr}]:{}", port.trim())
    } else {
        format!("{addr}:{}", port.trim())
    };
    (child, target)
}

/// tests/peers/text_server.py on `addr`: the child and the target to aim at.
fn text_server(addr: &str) -> (std::process::Child, String) {
    python_peer("tests/peers/text_server.py", addr, &[])
}

#[test]
fn text_probes_keep_a_server_that_reads_text_alive_and_its_answers_are_mismatched() {
    if !have_peer("python3") {
        return;
    }
    for addr in ["127.0.0.1", "::1"] {
        // sonde's binary probes end it: the reason --wire text exists.
        let (mut server, target) = text_server(addr);
        let _ = run(&["ping", &target, "-c", "3", "-r", "100", "-t", "100ms", "-q"]);
        let status = server.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(1),
            "{addr}: a binary probe should end it"
        );
        let (server, target) = text_server(addr);
        let mut server = KillOnDrop(server);
        let s = run_json(&[
            "ping", &target, "--wire", "text", "-c", "50", "-r", "500", "-t", "100ms",
        ]);
        assert_eq!(u(&s, "sent"), 50, "{s}");
        assert_eq!(
            (u(&s, "received"), u(&s, "mismatched")),
            (0, 50),
            "{addr}: {s}"
        );
        assert!(server.0.try_wait().unwrap().is_none(), "{addr}: it died");
        // It is still answering, and a "stop" ends it cleanly.
        let socket = std::net::UdpSocket::bind(if addr.contains(':') {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        })
        .unwrap();
        socket.send_to(b"stop", &target).unwrap();
        assert_eq!(server.0.wait().unwrap().code(), Some(0), "{addr}");
    }
    // Against an echo, text probes come back whole.
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&[
        "ping", &echo.addr, "--wire", "text", "-s", "200", "-c", "500", "-r", "5000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "mismatched")), (500, 0), "{s}");
}

/// tests/peers/tos_client.py: the TOS each of `count` answers from `port` on `host` came back
/// with, the datagrams sent with `tos`.
fn answers_tos(host: &str, port: &str, tos: u8, count: usize) -> Vec<u64> {
    let out = std::process::Command::new("python3")
        .arg(peer_script("tests/peers/tos_client.py"))
        .args([host, port, &tos.to_string(), &count.to_string()])
        .output()
        .unwrap();
    serde_json::from_slice::<Vec<u64>>(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn an_echo_answers_with_the_dscp_asked_and_counts_what_arrived_per_class() {
    if !have_peer("python3") {
        return;
    }
    // One IPv6 wildcard echo answers IPv6 and IPv4 (v4-mapped) peers alike.
    for (reply, expect) in [("keep", None), ("cs5", Some(40u64 << 2))] {
        // keep reads each request's TOS anyway; a fixed DSCP counts them when asked.
        let mut echo = json_echo("[::]:0", &["--dscp-reply", reply, "--report-tos"]);
        let port = echo.addr.rsplit(':').next().unwrap().to_string();
        // AF21 + ECT(0), and EF + CE: kept, the DSCP goes back and ECN is cleared.
        for (host, tos) in [("::1", 18 << 2 | 2), ("127.0.0.1", 46 << 2 | 3)] {
            let seen = answers_tos(host, &port, tos, 5);
            let want = expect.unwrap_or(u64::from(tos & !3));
            assert_eq!(seen, vec![want; 5], "{reply} to {host} sent with {tos}");
        }
        let s = stop_json(&mut echo, "INT");
        let t = &s["received_tos"];
        assert_eq!((u(&t["dscp"], "18"), u(&t["dscp"], "46")), (5, 5), "{s}");
        assert_eq!((u(&t["ecn"], "ect0"), u(t, "ce")), (5, 5), "{s}");
        assert_eq!(s["dscp_reply"], if reply == "keep" { "keep" } else { "40" });
    }
    // Without either flag nothing is read, and the answers go with the system's TOS (0).
    let mut echo = json_echo("127.0.0.1:0", &[]);
    let port = echo.addr.rsplit(':').next().unwrap().to_string();
    assert_eq!(answers_tos("127.0.0.1", &port, 46 << 2, 3), vec![0; 3]);
    assert!(stop_json(&mut echo, "INT").get("received_tos").is_none());
    for bad in ["keeps", "64", "af44"] {
        let out = run(&["echo", "--dscp-reply", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--dscp-reply"), "{stderr}");
    }
}

#[test]
fn an_interface_decides_the_way_out() {
    // Across a veth: through the veth the echo answers; tied to lo, nothing reaches it.
    let Some(pair) = NetnsPair::create("iface") else {
        return;
    };
    let mut cmd = pair.exec(&pair.b);
    cmd.args([
        "echo",
        "--bind",
        "198.18.0.2:9999",
        "--limit-per-source",
        "off",
    ]);
    let _echo = spawn_listening(cmd);
    let ping = |interface: &str| {
        pair.exec(&pair.a)
            .args(["ping", "198.18.0.2:9999", "--interface", interface])
            .args(["-c", "20", "-r", "200", "-t", "200ms", "--json"])
            .output()
            .unwrap()
    };
    let out = ping("va");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u(&s, "received"), 20, "{s}");
    let out = ping("lo");
    let received =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).map_or(0, |s| u(&s, "received"));
    assert_eq!(
        received,
        0,
        "tied to lo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn one_socket_for_both_families_sends_ipv4_with_the_options_asked() {
    // An IPv4 receiver that is not sonde, probed from the one IPv6 socket of a run that also
    // has an IPv6 target: the TTL and TOS must be on its datagrams too.
    let v6 = sonde_echo("[::1]:0");
    let seen = headers_seen("127.0.0.1", 3, |target| {
        let out = run(&[
            "ping", target, &v6.addr, "--ttl", "7", "--dscp", "ef", "-c", "3", "-r", "100", "-t",
            "50ms", "-q",
        ]);
        assert!(out.status.success(), "{out:?}");
    });
    if seen.is_null() {
        return;
    }
    assert_eq!(seen["ttl"], serde_json::json!([7, 7, 7]), "{seen}");
    let tos = 46 << 2;
    assert_eq!(seen["tos"], serde_json::json!([tos, tos, tos]), "{seen}");
}
