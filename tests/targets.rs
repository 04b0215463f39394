//! Many targets on one pinger: each its own figures and outages, replies placed by their source,
//! the targets file, per-target thresholds and exports.

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

/// The target summaries of a run, by address.
fn by_target(s: &serde_json::Value) -> std::collections::HashMap<String, serde_json::Value> {
    s["targets"]
        .as_array()
        .unwrap_or_else(|| panic!("no targets in {s}"))
        .iter()
        .map(|t| (t["target"].as_str().unwrap().to_string(), t.clone()))
        .collect()
}

/// An address where nothing listens (the kernel answers port unreachable).
fn dead_target() -> String {
    format!("127.0.0.1:{}", free_port())
}

#[test]
fn each_target_has_its_own_figures_and_the_total_adds_them_up() {
    let a = sonde_echo("127.0.0.1:0");
    let b = sonde_echo("127.0.0.2:0");
    let dead = dead_target();
    let s = run_json(&[
        "ping",
        &a.addr,
        &b.addr,
        &dead,
        "-c",
        "40",
        "-r",
        "200",
        "--timeout",
        "300ms",
    ]);
    let t = by_target(&s);
    assert_eq!(t.len(), 3);
    for live in [&a.addr, &b.addr] {
        let live = &t[live.as_str()];
        assert_eq!((u(live, "sent"), u(live, "received")), (40, 40), "{live}");
        assert!(live["outages"].as_array().unwrap().is_empty(), "{live}");
        assert_eq!(u(&live["rtt"], "count"), 40);
    }
    let down = &t[dead.as_str()];
    assert_eq!((u(down, "sent"), u(down, "received")), (40, 0), "{down}");
    assert_eq!(u(down, "lost"), 40);
    assert!(u(down, "unreachable") > 0, "ICMP said so: {down}");
    let outages = down["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{down}");
    // The total: the sums, one outage naming its target, nothing foreign.
    assert_eq!(s["target"], "3 targets");
    assert_eq!((u(&s, "sent"), u(&s, "received")), (120, 80));
    assert_eq!(u(&s, "lost"), 40);
    assert_eq!(u(&s, "foreign"), 0);
    assert_eq!(u(&s["rtt"], "count"), 80);
    let total_outages = s["outages"].as_array().unwrap();
    assert_eq!(total_outages.len(), 1);
    assert_eq!(total_outages[0]["target"], dead.as_str());
    // Each target's own sequence numbers: every one answered 0..40 (none mismatched).
    assert_eq!(u(&s, "mismatched"), 0);
}

#[test]
fn a_datagram_from_an_unlisted_source_is_foreign_and_replies_go_to_their_own_target() {
    // Two targets on one host and port-distinct: a reply is placed by its source address.
    let a = sonde_echo("127.0.0.1:0");
    let b = sonde_echo("127.0.0.1:0");
    let ping = sonde()
        .args(["ping", &a.addr, &b.addr, "-c", "300", "-r", "100", "--json"])
        .args(["--bind", "127.0.0.1:0", "--timeout", "500ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A stray sender aims at every port the pinger could have; one is the pinger's.
    std::thread::sleep(Duration::from_millis(800));
    let pinger_port = local_port_of(ping.id());
    let stray = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..5 {
        stray
            .send_to(b"not a reply", ("127.0.0.1", pinger_port))
            .unwrap();
    }
    let out = ping.wait_with_output_json();
    let t = by_target(&out);
    assert_eq!(u(&t[&a.addr], "received"), 300);
    assert_eq!(u(&t[&b.addr], "received"), 300);
    assert_eq!(u(&out, "foreign"), 5, "{out}");
    assert_eq!(u(&out, "mismatched"), 0);
}

/// The UDP port process `pid` has open (its only UDP socket).
fn local_port_of(pid: u32) -> u16 {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if inodes.iter().any(|i| i == cols[9]) {
            let port = cols[1].split(':').nth(1).unwrap();
            return u16::from_str_radix(port, 16).unwrap();
        }
    }
    panic!("no UDP socket for pid {pid}");
}

trait JsonOutput {
    fn wait_with_output_json(self) -> serde_json::Value;
}

impl JsonOutput for std::process::Child {
    fn wait_with_output_json(self) -> serde_json::Value {
        let out = self.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", out.status);
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn a_targets_file_names_and_labels_its_targets() {
    let a = sonde_echo("127.0.0.1:0");
    let b = sonde_echo("127.0.0.3:0");
    let dir = stamp_temp_dir("targets-file");
    let file = dir.join("targets");
    std::fs::write(
        &file,
        format!(
            "# two echoes\n{} name=alpha site=ams\n\n{}   # no labels\n",
            a.addr, b.addr
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let s = run_json(&["ping", "--targets", path, "-c", "10", "-r", "100"]);
    let t = by_target(&s);
    assert_eq!(t[&a.addr]["name"], "alpha");
    assert_eq!(t[&a.addr]["labels"]["site"], "ams");
    assert!(t[&b.addr].get("name").is_none(), "{}", t[&b.addr]);
    // Text: one line per target, the name shown, then the total.
    let out = run(&["ping", "--targets", path, "-c", "10", "-r", "100", "-q"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("alpha ({})", a.addr)), "{text}");
    let table: Vec<&str> = text.lines().take_while(|l| !l.starts_with("---")).collect();
    assert_eq!(table.len(), 3, "heading and two targets: {text}");
    assert!(
        text.contains("--- 2 targets sonde ping statistics ---"),
        "{text}"
    );
    // Command line and file together.
    let c = sonde_echo("127.0.0.4:0");
    let s = run_json(&["ping", &c.addr, "--targets", path, "-c", "5", "-r", "100"]);
    assert_eq!(by_target(&s).len(), 3);
}

fn stamp_temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bad_targets_exit_2_naming_the_file_and_line_or_the_target() {
    let dir = stamp_temp_dir("bad-targets");
    let file = dir.join("targets");
    let path = file.to_str().unwrap().to_string();
    let cases: [(&str, &str); 4] = [
        ("127.0.0.1:9000\nno-such-host.invalid:9000\n", "line 2"),
        ("127.0.0.1:9000 site\n", "line 1"),
        ("127.0.0.1:9000 target=x\n", "sets this label itself"),
        ("# nothing\n", "lists no target"),
    ];
    for (contents, says) in cases {
        std::fs::write(&file, contents).unwrap();
        let out = run(&["ping", "--targets", &path, "-c", "1"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{contents}: {err}");
        assert!(
            err.contains("--targets") && err.contains(says),
            "{contents}: {err}"
        );
        if says.starts_with("line") {
            assert!(err.contains(&path), "names the file: {err}");
        }
    }
    let twice = run(&["ping", "127.0.0.1:9000", "127.0.0.1:9000", "-c", "1"]);
    assert_eq!(twice.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&twice.stderr).contains("given twice"));
    let connect = run(&["ping", "127.0.0.1:9000", "127.0.0.2:9000", "--connect"]);
    assert_eq!(connect.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&connect.stderr).contains("--connect"));
    let missing = run(&["ping", "--targets", "/nonexistent/targets", "-c", "1"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/targets"));
}

#[test]
fn thresholds_apply_per_target_and_name_each_that_crossed() {
    let a = sonde_echo("127.0.0.1:0");
    let dead = dead_target();
    let out = run(&[
        "ping",
        &a.addr,
        &dead,
        "-c",
        "20",
        "-r",
        "100",
        "--timeout",
        "200ms",
        "-q",
        "--fail-loss",
        "5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let crossed: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("threshold crossed"))
        .collect();
    assert_eq!(crossed.len(), 1, "only the dead target: {err}");
    assert!(crossed[0].contains(&dead), "{err}");
    // The total loss is 50%, but each live target passes on its own.
    let ok = run(&[
        "ping",
        &a.addr,
        "-c",
        "20",
        "-r",
        "100",
        "-q",
        "--fail-loss",
        "5",
    ]);
    assert_eq!(ok.status.code(), Some(0));
}

#[test]
fn flows_deal_the_targets_and_exports_carry_them() {
    let echoes: Vec<Server> = (1..=4)
        .map(|i| sonde_echo(&format!("127.0.0.{i}:0")))
        .collect();
    let addrs: Vec<&str> = echoes.iter().map(|e| e.addr.as_str()).collect();
    let dir = stamp_temp_dir("targets-exports");
    let csv = dir.join("probes.csv");
    let hlog = dir.join("rtt.hlog");
    let mut args = vec!["ping"];
    args.extend(&addrs);
    let (csv_s, hlog_s) = (csv.to_str().unwrap(), hlog.to_str().unwrap());
    args.extend(["-c", "20", "-r", "100", "--flows", "2"]);
    args.extend(["--export-csv", csv_s, "--export-hlog", hlog_s]);
    let s = run_json(&args);
    let flows = s["flows"].as_array().unwrap();
    assert_eq!(flows.len(), 2);
    for flow in flows {
        assert_eq!(flow["target"], "2 targets", "{flow}");
    }
    assert_eq!(by_target(&s).len(), 4);
    assert_eq!((u(&s, "sent"), u(&s, "received")), (80, 80));
    // CSV: a target column, every probe of every target once.
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "flow,target,seq,scheduled_ns,sent_ns,rtt_ns,status"
    );
    for addr in &addrs {
        let rows = text
            .lines()
            .filter(|l| l.contains(&format!(",{addr},")))
            .count();
        assert_eq!(rows, 20, "{addr}");
    }
    // The interval log: tagged intervals, one series per target.
    let log = std::fs::read_to_string(&hlog).unwrap();
    for addr in &addrs {
        assert!(log.contains(&format!("Tag={addr},")), "{addr}: {log}");
    }
    let merged = run(&["merge", hlog_s, "--json"]);
    assert!(merged.status.success());
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert_eq!(u(&merged["rtt"], "count"), 80, "{merged}");
}

#[test]
fn a_target_that_goes_away_mid_run_is_an_outage_of_its_own() {
    let a = sonde_echo("127.0.0.1:0");
    let mut b = sonde_echo("127.0.0.2:0");
    let ping = sonde()
        .args(["ping", &a.addr, &b.addr, "-r", "50", "-d", "3s", "--json"])
        .args(["--timeout", "200ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    b.child.kill().unwrap();
    b.child.wait().unwrap();
    let s = ping.wait_with_output_json();
    let t = by_target(&s);
    let (up, down) = (&t[&a.addr], &t[&b.addr]);
    assert_eq!(u(up, "lost"), 0, "{up}");
    assert!(up["outages"].as_array().unwrap().is_empty(), "{up}");
    let outages = down["outages"].as_array().unwrap();
    assert_eq!(outages.len(), 1, "{down}");
    let outage = &outages[0];
    assert!(
        f(outage, "start_s") > 0.8,
        "began when the echo went: {outage}"
    );
    assert!(u(down, "received") > 30, "answered before: {down}");
    assert_eq!(s["outages"].as_array().unwrap().len(), 1);
}

#[test]
fn targets_of_both_families_share_one_socket() {
    let v4 = sonde_echo("127.0.0.1:0");
    let v6 = sonde_echo("[::1]:0");
    let dead_v6 = format!("[::1]:{}", free_port());
    let s = run_json(&[
        "ping",
        &v4.addr,
        &v6.addr,
        &dead_v6,
        "-c",
        "30",
        "-r",
        "100",
        "--timeout",
        "200ms",
    ]);
    let t = by_target(&s);
    assert_eq!(u(&t[&v4.addr], "received"), 30, "{s}");
    assert_eq!(u(&t[&v6.addr], "received"), 30, "{s}");
    assert_eq!(u(&t[&dead_v6], "received"), 0);
    assert!(u(&t[&dead_v6], "unreachable") > 0, "ICMPv6 placed: {s}");
    assert_eq!(u(&t[&v4.addr], "unreachable"), 0);
    assert_eq!(u(&s, "foreign"), 0);
    assert!(s["local"].as_str().unwrap().starts_with("[::]:"), "{s}");
    // Dealt over two pingers: each serves both families (a reload may hand it either).
    let s = run_json(&[
        "ping", &v4.addr, &v6.addr, "-c", "10", "-r", "100", "--flows", "2",
    ]);
    for flow in s["flows"].as_array().unwrap() {
        assert!(
            flow["local"].as_str().unwrap().starts_with("[::]:"),
            "{flow}"
        );
    }
    assert_eq!(u(&s, "received"), 20);
    // Only the unspecified IPv6 address reaches both.
    let out = run(&[
        "ping",
        &v4.addr,
        &v6.addr,
        "--bind",
        "127.0.0.1:0",
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bind"));
}
