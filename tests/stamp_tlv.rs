//! STAMP beyond the base packet: RFC 8972 TLVs both ways (against sonde and stamp-suite),
//! hostile TLVs, remarking seen on the wire, and what each direction did (loss, IPDV,
//! reordering).

mod common;

use common::stamp::*;
use common::*;
use std::net::UdpSocket;
use std::time::Duration;

const ALL_TLVS: &str = "timestamp-info,cos,direct,padding";

/// No TLV of a reply was flagged, malformed or unvouched for.
fn assert_clean(t: &serde_json::Value) {
    for flag in [
        "unrecognized",
        "malformed",
        "integrity_failed",
        "hmac_failed",
    ] {
        assert_eq!(u(t, flag), 0, "{flag}: {t}");
    }
}

/// A reflector asks the kernel for each packet's TOS only once a Class of Service TLV comes:
/// that first one is answered unprocessed (U). Sends it, and checks it came back so.
fn first_class_of_service(addr: &str, key: &[&str]) {
    let mut args = vec![
        "ping",
        addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "cos",
        "-c",
        "1",
    ];
    args.extend_from_slice(key);
    let s = run_json(&args);
    assert_eq!(u(&s["stamp_tlvs"], "unrecognized"), 1, "{s}");
}

#[test]
fn every_tlv_comes_back_filled_in_from_sonde_s_reflector() {
    let (reflector, addr) = sonde_reflector(&[]);
    first_class_of_service(&addr, &[]);
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        ALL_TLVS,
        "--dscp",
        "af21",
        "--ecn",
        "ect0",
        "--size",
        "120",
        "-c",
        "300",
        "-r",
        "3000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "mismatched")), (300, 0), "{s}");
    let t = &s["stamp_tlvs"];
    assert_eq!(
        t["sent"],
        serde_json::json!([
            "timestamp_info",
            "class_of_service",
            "direct_measurement",
            "extra_padding"
        ])
    );
    assert_eq!(u(t, "tlvs"), 4 * 300, "{t}");
    assert_clean(t);
    // Sent as AF21 (18) with ECT(0); loopback changes neither.
    let cos = &t["class_of_service"];
    assert_eq!(
        (u(cos, "dscp_sent"), cos["ecn_sent"].as_str()),
        (18, Some("ect0"))
    );
    assert_eq!(u(&cos["dscp_at_reflector"], "18"), 300, "{cos}");
    assert_eq!(u(&cos["ecn_at_reflector"], "ect0"), 300, "{cos}");
    assert_eq!(u(cos, "remarked") + u(cos, "ecn_changed"), 0);
    let d = &t["direct_measurement"];
    assert_eq!(
        (
            u(d, "sender_sent"),
            u(d, "reflector_received"),
            u(d, "reflector_sent")
        ),
        (300, 300, 300)
    );
    assert_eq!(t["reflector_clock"]["timestamp_method"], "software");
    let echo = counters(reflector);
    // The first run: Class of Service and the padding after it.
    assert_eq!(u(&echo["stamp_tlvs"], "tlvs"), 2 + 4 * 300, "{echo}");
    assert_eq!(
        u(&echo["stamp_tlvs"], "unrecognized"),
        1,
        "the first: {echo}"
    );
    assert_eq!(
        u(&echo, "bytes_out"),
        u(&echo, "bytes"),
        "never longer than asked"
    );
}

#[test]
fn over_ipv6_the_traffic_class_and_hop_limit_are_reported() {
    let (_reflector, addr) = sonde_reflector_on("[::1]:0", &[]);
    first_class_of_service(&addr, &[]);
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "cos",
        "--dscp",
        "af41",
        "--ecn",
        "ce",
        "-c",
        "100",
        "-r",
        "2000",
    ]);
    assert_eq!(u(&s, "received"), 100, "{s}");
    assert_clean(&s["stamp_tlvs"]);
    let cos = &s["stamp_tlvs"]["class_of_service"];
    assert_eq!(u(&cos["dscp_at_reflector"], "34"), 100, "{cos}");
    assert_eq!(u(&cos["ecn_at_reflector"], "ce"), 100, "{cos}");
    assert_eq!(u(&s["forward"]["ttl"], "max"), 64, "the hop limit: {s}");
}

#[test]
fn an_authenticated_run_seals_its_tlvs_with_an_hmac_tlv_both_ways() {
    let dir = temp_dir("tlv-auth");
    let key = key_file(&dir);
    let (reflector, addr) = sonde_reflector(&["--key-file", &key]);
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--key-file",
        &key,
        "--stamp-tlv",
        "direct",
        "-c",
        "100",
        "-r",
        "2000",
    ]);
    let t = &s["stamp_tlvs"];
    assert_eq!(t["sent"], serde_json::json!(["direct_measurement", "hmac"]));
    assert_eq!((u(t, "tlvs"), u(t, "hmac_failed")), (200, 0), "{t}");
    assert_eq!(u(t, "integrity_failed"), 0, "{t}");
    let echo = counters(reflector);
    assert_eq!(u(&echo["stamp_tlvs"], "integrity_failed"), 0, "{echo}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn tlvs_sonde_does_not_know_or_that_are_broken_are_flagged_never_grown() {
    let (reflector, addr) = sonde_reflector(&[]);
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // A base packet, then Location (type 2, not processed), then a Class of Service of 3
    // bytes (malformed), then a TLV whose length runs past the end.
    let mut packet = vec![0u8; 44];
    packet[13] = 1; // a valid Error Estimate multiplier
    packet.extend_from_slice(&[0x80, 2, 0, 4, 1, 2, 3, 4]);
    packet.extend_from_slice(&[0x80, 4, 0, 3, 9, 9, 9]);
    packet.extend_from_slice(&[0x80, 5, 0, 200, 1, 2]);
    client.send_to(&packet, &addr).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = client.recv_from(&mut buf).unwrap();
    assert_eq!(n, packet.len(), "as long as asked");
    let area = &buf[44..n];
    assert_eq!(area[0], 0x80, "U kept on a type sonde does not process");
    assert_eq!(&area[4..8], &[1, 2, 3, 4], "its value copied");
    assert_eq!(area[8], 0x40, "M on the short Class of Service");
    assert_eq!(area[15], 0x40, "M on the one running past the end");
    let echo = counters(reflector);
    let t = &echo["stamp_tlvs"];
    assert_eq!((u(t, "unrecognized"), u(t, "malformed")), (1, 2), "{echo}");
}

/// A reflector that answers sonde's test packets with the base packet right and the TLVs
/// replaced by `tail`: forged or broken TLVs in replies.
fn forging_reflector(tail: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let mut reply = buf[..n].to_vec();
            // Reflected fields: T2, the sender's sequence, T1 and error estimate.
            reply.copy_within(0..4, 24);
            reply.copy_within(4..14, 28);
            reply.copy_within(4..12, 16);
            let end = (44 + tail.len()).min(n);
            reply[44..end].copy_from_slice(&tail[..end - 44]);
            let _ = socket.send_to(&reply, from);
        }
    });
    (addr, handle)
}

#[test]
fn garbage_and_forged_tlvs_in_replies_are_counted_never_trusted() {
    // An HMAC TLV that cannot verify, after a Direct Measurement that claims huge counts.
    const FORGED: &[u8] = &[
        0, 5, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 8, 0, 16, 1, 2,
        3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ];
    let (addr, forger) = forging_reflector(FORGED);
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "direct",
        "--size",
        "80",
        "-c",
        "50",
        "-r",
        "1000",
    ]);
    assert_eq!(u(&s, "received"), 50, "{s}");
    assert_eq!(u(&s["stamp_tlvs"], "hmac_failed"), 50, "{s}");
    assert!(s["stamp_tlvs"].get("direct_measurement").is_none(), "{s}");
    forger.join().unwrap();
    // Pure garbage after the base packet: read as TLVs, flagged, the run goes on.
    const GARBAGE: &[u8] = &[
        0xde, 0xad, 0xbe, 0xef, 0x13, 0x37, 0x42, 0x42, 0xff, 0xff, 0, 1,
    ];
    let (addr, forger) = forging_reflector(GARBAGE);
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "padding",
        "--size",
        "56",
        "-c",
        "50",
        "-r",
        "1000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "mismatched")), (50, 0), "{s}");
    assert!(u(&s["stamp_tlvs"], "malformed") >= 50, "{s}");
    forger.join().unwrap();
}

#[test]
fn direct_measurement_splits_the_loss_even_through_a_stateless_reflector() {
    let direct = [&["--stamp-tlv", "direct"][..], &TEN_PERCENT_RUN].concat();
    let s = through_impair(&[], &["--loss", "10%", "--direction", "up"], &direct);
    let forward = assert_ten_percent_lost(&s, "forward", "backward");
    assert_eq!(u(&s, "lost"), forward + u(&s, "lost_unattributed"), "{s}");
}

#[test]
fn reordering_and_ipdv_show_on_the_direction_that_has_them() {
    // Half the answers skip a 2 ms delay on the way back: they overtake, and the backward
    // delay jumps between probes; the way out is untouched.
    let s = through_impair(
        &["--stateful"],
        &["--delay", "2ms", "--reorder", "50%", "--direction", "down"],
        &["-c", "1000", "-r", "2000"],
    );
    assert_eq!(u(&s, "received"), 1000, "{s}");
    assert!(u(&s["backward"], "reordered") > 100, "{s}");
    assert_eq!(u(&s["forward"], "reordered"), 0, "{s}");
    // The 2 ms steps show in the backward IPDV; the forward one holds only the host's own
    // scheduling noise (which a loaded test machine can push up, hence a ratio).
    let (backward, forward) = (
        f(&s["backward"]["ipdv"], "p90_us"),
        f(&s["forward"]["ipdv"], "p90_us"),
    );
    assert!(backward > 1_000.0, "{s}");
    assert!(
        forward * 2.0 < backward,
        "forward {forward} vs backward {backward}: {s}"
    );
}

#[test]
fn stamp_intervals_and_csv_carry_both_directions() {
    let (_reflector, addr) = sonde_reflector(&["--stateful"]);
    let dir = temp_dir("tlv-exports");
    let csv = dir.join("run.csv");
    let csv = csv.to_str().unwrap();
    let out = run(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "-c",
        "400",
        "-r",
        "1000",
        "--interval",
        "100ms",
        "--format",
        "jsonl",
        "--export-csv",
        csv,
    ]);
    assert!(out.status.success());
    let stream = String::from_utf8_lossy(&out.stdout);
    let interval: serde_json::Value = stream
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "interval")
        .unwrap();
    assert!(
        u(&interval["data"]["forward_delay"], "count") > 0,
        "{interval}"
    );
    assert!(
        u(&interval["data"]["backward_delay"], "count") > 0,
        "{interval}"
    );
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("flow,seq,scheduled_ns,sent_ns,rtt_ns,status,forward_ns,backward_ns,dwell_ns")
    );
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row.len(), 9);
    let (rtt, forward, backward): (i64, i64, i64) = (
        row[4].parse().unwrap(),
        row[6].parse().unwrap(),
        row[7].parse().unwrap(),
    );
    // One host, one clock: the two ways add up to the round trip (dwell already off it).
    assert!((forward + backward - rtt).abs() < 2_000, "{row:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

// ---- against stamp-suite (installed by .ci/run) ----

#[test]
fn stamp_suite_fills_in_sonde_s_tlvs_strict_and_authenticated() {
    let dir = temp_dir("suite-tlv");
    let key = key_file(&dir);
    let Some((_suite, addr)) = suite_reflector(&[
        "--tlv-mode",
        "echo",
        "--strict-packets",
        "--stateful-reflector",
        "-A",
        "A",
        "--hmac-key-file",
        &key,
        "--verify-tlv-hmac",
    ]) else {
        return;
    };
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--key-file",
        &key,
        "--stamp-tlv",
        ALL_TLVS,
        "--dscp",
        "ef",
        "--size",
        "200",
        "-c",
        "200",
        "-r",
        "1000",
    ]);
    assert_eq!((u(&s, "received"), u(&s, "mismatched")), (200, 0), "{s}");
    let t = &s["stamp_tlvs"];
    assert_eq!(u(t, "tlvs"), 5 * 200, "{t}");
    assert_clean(t);
    assert_eq!(
        u(&t["class_of_service"]["dscp_at_reflector"], "46"),
        200,
        "{t}"
    );
    assert_eq!(
        u(&t["direct_measurement"], "reflector_received"),
        200,
        "{t}"
    );
    assert_eq!(t["reflector_clock"]["sync_source"], "local", "{t}");
    // Its stateful count splits the loss (none here).
    assert_eq!(u(&s["forward"], "lost"), 0);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_reflector_that_ignores_tlvs_leaves_them_unrecognised_and_nothing_is_guessed() {
    let Some((_suite, addr)) = suite_reflector(&["--tlv-mode", "ignore"]) else {
        return;
    };
    let s = run_json(&[
        "ping",
        &addr,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "cos,direct",
        "-c",
        "100",
        "-r",
        "1000",
    ]);
    let t = &s["stamp_tlvs"];
    assert_eq!((u(t, "tlvs"), u(t, "unrecognized")), (200, 200), "{t}");
    assert_eq!(
        t["class_of_service"]["dscp_at_reflector"],
        serde_json::json!({})
    );
    assert!(t.get("direct_measurement").is_none(), "{t}");
}

#[test]
fn stamp_suite_s_tlvs_are_answered_by_sonde_s_reflector() {
    if stamp_suite().is_none() {
        return;
    }
    let dir = temp_dir("suite-sends-tlv");
    let key = key_file(&dir);
    let (reflector, addr) = sonde_reflector(&["--stateful", "--key-file", &key]);
    // Its first Class of Service TLV would come back unprocessed: send that one first.
    first_class_of_service(&addr, &["--key-file", &key]);
    let s = suite_sender(
        &addr,
        100,
        &[
            "-A",
            "A",
            "--hmac-key-file",
            &key,
            "--cos",
            "--dscp",
            "46",
            "--timestamp-info",
            "--direct-measurement",
            "--extra-padding",
            "20",
        ],
    );
    assert_eq!(s["packets_received"], 100, "{s}");
    let v = &s["measurements"]["tlv_validation"];
    assert_eq!(v["hmac"]["verified"], 100, "its HMAC TLV checks ours: {v}");
    for flag in ["unrecognized", "malformed", "integrity_failed"] {
        assert_eq!(v["flags"][flag], 0, "{flag}: {v}");
    }
    let d = &s["measurements"]["direct_measurement"];
    assert_eq!(d["observations"], 100, "{d}");
    assert_eq!(d["forward_missing"], 0, "{d}");
    assert_eq!(s["measurements"]["last_reflector_sequence"], 99, "{s}");
    let echo = counters(reflector);
    assert_eq!(u(&echo["stamp_tlvs"], "tlvs"), 2 + 5 * 100, "{echo}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_malformed_tlv_from_stamp_suite_comes_back_flagged() {
    if stamp_suite().is_none() {
        return;
    }
    let (reflector, addr) = sonde_reflector(&[]);
    let s = suite_sender(
        &addr,
        20,
        &["--timestamp-info", "--malformed", "bad-length"],
    );
    assert_eq!(s["packets_received"], 20, "{s}");
    let v = &s["measurements"]["tlv_validation"];
    assert_eq!(v["flags"]["malformed"], 20, "{v}");
    let echo = counters(reflector);
    assert_eq!(u(&echo["stamp_tlvs"], "malformed"), 20, "{echo}");
}

// ---- on the wire, in a namespace of the test's own ----

#[test]
fn a_dscp_remarked_on_the_way_is_seen_by_the_reflector() {
    if !have_peer("nft") {
        return;
    }
    let Some(ns) = Netns::create("remark") else {
        return;
    };
    let port = "18620";
    // Every test packet to the reflector is remarked CS1, as a policing router might.
    let rules = format!(
        "add table ip remark\n\
         add chain ip remark out {{ type filter hook output priority 0; }}\n\
         add rule ip remark out udp dport {port} ip dscp set cs1\n"
    );
    let mut nft = ns.command("nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(rules.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "nft rules refused");
    let exe = env!("CARGO_BIN_EXE_sonde");
    let mut echo = ns.command(exe);
    echo.args([
        "echo",
        "--wire",
        "stamp",
        "--bind",
        &format!("127.0.0.1:{port}"),
    ]);
    let _echo = spawn_listening(echo);
    let target = format!("127.0.0.1:{port}");
    let ping = |count: &str| {
        ns.command(exe)
            .args(["ping", &target, "--wire", "stamp", "--stamp-tlv", "cos"])
            .args(["--dscp", "ef", "-c", count, "-r", "1000", "--json"])
            .output()
            .unwrap()
    };
    // The reflector's first Class of Service TLV turns on its TOS reports (and comes back
    // unprocessed): the run after it is the one measured.
    assert!(ping("1").status.success());
    let out = ping("100");
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cos = &s["stamp_tlvs"]["class_of_service"];
    assert_eq!(u(cos, "dscp_sent"), 46, "{s}");
    assert_eq!(
        u(&cos["dscp_at_reflector"], "8"),
        100,
        "CS1 at the reflector: {cos}"
    );
    assert_eq!(u(cos, "remarked"), 100, "{cos}");
}

#[test]
fn bad_tlv_flags_name_the_flag_and_exit_2() {
    for (args, flag) in [
        (
            &["ping", "127.0.0.1:9", "--stamp-tlv", "cos", "-c", "1"][..],
            "--stamp-tlv",
        ),
        (
            &[
                "ping",
                "127.0.0.1:9",
                "--wire",
                "stamp",
                "--stamp-tlv",
                "location",
            ],
            "--stamp-tlv",
        ),
        (&["ping", "127.0.0.1:9", "--dscp", "af44"], "--dscp"),
        (&["ping", "127.0.0.1:9", "--dscp", "64"], "--dscp"),
        (&["ping", "127.0.0.1:9", "--ecn", "ect2"], "--ecn"),
        (
            // 44 + 8 (Timestamp Information) leaves 2 bytes: too few for an Extra Padding TLV.
            &[
                "ping",
                "127.0.0.1:9",
                "--wire",
                "stamp",
                "--stamp-tlv",
                "timestamp-info",
                "--size",
                "54",
            ],
            "--size",
        ),
    ] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn a_dual_stack_reflector_reports_the_class_of_service_of_ipv4_peers_too() {
    // An IPv6 wildcard socket: IPv4 peers' datagrams come v4-mapped, with IPv4's TOS.
    let (_reflector, addr) = sonde_reflector_on("[::]:0", &[]);
    let port = addr.rsplit(':').next().unwrap();
    let target = format!("127.0.0.1:{port}");
    first_class_of_service(&target, &[]);
    let s = run_json(&[
        "ping",
        &target,
        "--wire",
        "stamp",
        "--stamp-tlv",
        "cos",
        "--dscp",
        "ef",
        "-c",
        "20",
        "-r",
        "200",
    ]);
    let cos = &s["stamp_tlvs"]["class_of_service"];
    assert_eq!(u(&cos["dscp_at_reflector"], "46"), 20, "{s}");
}
