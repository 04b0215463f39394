//! `--metrics`: checked against the real thing. A Prometheus server (Debian's package) started
//! on loopback scrapes sonde every second; what its query API answers must agree with sonde's own
//! JSON summary of the same run, and `promtool check metrics` must find nothing to complain
//! about. The endpoint's manners (404, 405, a slow client) are checked by hand over TCP.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.0 request to `addr`: the status code and the body.
fn http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

fn get(addr: &str, path: &str, accept: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"),
    )
}

/// A Prometheus query's scalar answer (the first series' value), or `None`.
fn query(prometheus: &str, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, body) = get(prometheus, &format!("/api/v1/query?query={encoded}"), "*/*");
    assert_eq!(status, 200, "{promql}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
}

/// Prometheus on a free loopback port scraping `targets` every second, its data in `dir`.
fn prometheus(dir: &Path, targets: &[&str]) -> (KillOnDrop, String) {
    let list = targets
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: sonde\n    static_configs:\n      - targets: [{list}]\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let prometheus = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&web).is_err() || get(&web, "/-/ready", "*/*").0 != 200 {
        assert!(Instant::now() < deadline, "prometheus did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (prometheus, web)
}

/// `promtool check metrics` on an exposition: it must succeed and say nothing.
fn promtool_check(exposition: &str) {
    if !have_peer("promtool") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{exposition}"
    );
}

#[test]
fn prometheus_scrapes_what_sonde_measured_and_promtool_accepts_it() {
    if !have_peer("prometheus") || !have_peer("promtool") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("sonde-prometheus-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let echo_metrics = format!("127.0.0.1:{}", free_port());
    let ping_metrics = format!("127.0.0.1:{}", free_port());
    let mut echo = json_echo("127.0.0.1:0", &["--metrics", &echo_metrics]);
    let (_prometheus, web) = prometheus(&dir, &[&ping_metrics, &echo_metrics]);
    // Prometheus hands new targets to its scrapers every 5 s: wait until the echo has been
    // scraped, so that the pinger is from its start too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&web, "max(up)") != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped the echo"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A run of known length; sonde waits for a scrape to take its final values.
    let s = run_json(&[
        "ping",
        &echo.addr,
        "-r",
        "500",
        "-d",
        "6s",
        "--metrics",
        &ping_metrics,
    ]);
    let sent = u(&s, "sent");
    let received = u(&s, "received");
    let last = |metric: &str| format!("sum(last_over_time({metric}[5m]))");
    assert_eq!(
        query(&web, &last("sonde_probes_sent_total")),
        Some(sent as f64)
    );
    assert_eq!(
        query(&web, &last("sonde_probes_received_total")),
        Some(received as f64)
    );
    assert_eq!(
        query(&web, &last("sonde_rtt_seconds_count")),
        Some(received as f64)
    );
    // The median from the buckets lies in the bucket of sonde's own median (1-2-5 steps).
    let p50 = query(
        &web,
        "histogram_quantile(0.5, sum by (le) (last_over_time(sonde_rtt_seconds_bucket[5m])))",
    )
    .unwrap();
    let own = f(&s["rtt"], "p50_us") / 1e6;
    let bounds: Vec<f64> = (-6..1)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .collect();
    let upper = bounds.iter().copied().find(|&b| b >= own).unwrap();
    let lower = bounds.iter().copied().rfind(|&b| b < own).unwrap_or(0.0);
    assert!(
        (lower..=upper).contains(&p50),
        "prometheus p50 {p50} s, sonde's {own} s"
    );
    // The echo's counters, once its next report is in.
    std::thread::sleep(Duration::from_millis(2500));
    let echoed = query(&web, "sum(sonde_echo_datagrams_total)");
    // promtool: the echo's Prometheus text exposition has nothing to fix (the pinger's is
    // checked in the next test).
    promtool_check(&get(&echo_metrics, "/metrics", "text/plain").1);
    let summary = stop_json(&mut echo, "INT");
    assert_eq!(echoed, Some(u(&summary, "datagrams") as f64), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_endpoint_speaks_both_formats_refuses_the_rest_and_a_slow_client_stalls_nothing() {
    let echo = sonde_echo("127.0.0.1:0");
    let metrics = format!("127.0.0.1:{}", free_port());
    // A hostile client: connects, sends half a request and a huge header, and stays.
    let ping = {
        let (echo, metrics) = (echo.addr.clone(), metrics.clone());
        std::thread::spawn(move || {
            run_json(&[
                "ping",
                &echo,
                "-r",
                "2000",
                "-d",
                "3s",
                "--metrics",
                &metrics,
            ])
        })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(&metrics).is_err() {
        assert!(Instant::now() < deadline, "no endpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut slow = TcpStream::connect(&metrics).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nX-Huge: ")
        .unwrap();
    let _ = slow.write_all(&vec![b'a'; 1 << 20]);
    std::thread::sleep(Duration::from_millis(500));
    let (status, body) = get(
        &metrics,
        "/metrics",
        "application/openmetrics-text; version=1.0.0",
    );
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("sonde_probes_sent_total{target="), "{body}");
    let (status, body) = get(&metrics, "/metrics", "text/plain");
    assert_eq!(status, 200);
    assert!(!body.contains("# EOF"), "{body}");
    assert!(
        body.contains("# TYPE sonde_probes_sent_total counter"),
        "{body}"
    );
    assert_eq!(get(&metrics, "/nope", "*/*").0, 404);
    let post = format!("POST /metrics HTTP/1.0\r\nHost: {metrics}\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(http(&metrics, &post).0, 405);
    let s = ping.join().unwrap();
    drop(slow);
    // The measurement went on untouched: every probe answered, none late for want of a turn.
    assert_eq!(u(&s, "received"), u(&s, "sent"), "{s}");
    assert!(u(&s, "sent") >= 5_900, "{s}");
}

#[test]
fn bad_metrics_flags_exit_2_naming_them() {
    for (args, flag) in [
        (&["--metrics", "nowhere"][..], "--metrics"),
        (
            &["--metrics", "9100", "--metrics-buckets", "1ms,1us"],
            "--metrics-buckets",
        ),
        (&["--metrics-buckets", "1ms"], "--metrics"),
    ] {
        let out = run(&[&["ping", "127.0.0.1:9"][..], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    // A port already taken is a runtime fault naming the address.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["ping", "127.0.0.1:9", "-c", "1", "--metrics", &addr]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--metrics") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[test]
fn the_shipped_prometheus_config_and_rules_pass_promtool_and_their_own_tests() {
    if !have_peer("promtool") {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus");
    for args in [
        &["check", "config", "prometheus.yml"][..],
        &["check", "rules", "sonde.rules.yml"],
        &["test", "rules", "sonde.rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "promtool {args:?}: {said}");
    }
}

/// The value of `metric` (one series) in a Prometheus text exposition.
fn value_in(exposition: &str, metric: &str) -> Option<f64> {
    exposition
        .lines()
        .find(|l| l.starts_with(metric) && l[metric.len()..].starts_with('{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn stamp_runs_export_their_loss_by_direction_as_the_summary_splits_it() {
    let metrics = format!("127.0.0.1:{}", free_port());
    // A scraper every 200 ms, keeping the last exposition it got (sonde waits for its next
    // scrape to serve the final values).
    let scraper = {
        let metrics = metrics.clone();
        std::thread::spawn(move || {
            let mut last = String::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seen = false;
            while Instant::now() < deadline {
                match TcpStream::connect(&metrics) {
                    Ok(_) => {
                        seen = true;
                        last = get(&metrics, "/metrics", "text/plain").1;
                    }
                    Err(_) if seen => break,
                    Err(_) => {}
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            last
        })
    };
    // 10% lost on the way up, through a counting reflector.
    let s = stamp::through_impair(
        &["--stateful"],
        &["--loss", "10%", "--direction", "up"],
        &[
            "-c",
            "2000",
            "-r",
            "1000",
            "-t",
            "300ms",
            "--metrics",
            &metrics,
        ],
    );
    let exposition = scraper.join().unwrap();
    let forward = u(&s["forward"], "lost");
    assert!(forward > 100, "10% up: {s}");
    let metric = |name| value_in(&exposition, name);
    assert_eq!(
        metric("sonde_forward_lost_total"),
        Some(forward as f64),
        "{exposition}"
    );
    let backward = u(&s["backward"], "lost") as f64;
    assert_eq!(
        metric("sonde_backward_lost_total"),
        Some(backward),
        "{exposition}"
    );
    assert_eq!(
        metric("sonde_probes_sent_total"),
        Some(2000.0),
        "{exposition}"
    );
    assert!(
        metric("sonde_forward_delay_seconds_count").is_some(),
        "{exposition}"
    );
}

#[test]
fn an_echo_with_metrics_keeps_its_stats_lines_at_the_interval_asked() {
    // The metrics want a report every second; the lines still come every 2 s.
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut echo = json_echo(
        "127.0.0.1:0",
        &["--stats-interval", "2s", "--metrics", &metrics],
    );
    std::thread::sleep(Duration::from_millis(4500));
    signal(&echo.child, "INT");
    let mut out = String::new();
    echo.stdout.read_to_string(&mut out).unwrap();
    let stats = out.lines().filter(|l| l.contains("\"stats\"")).count();
    assert_eq!(stats, 2, "{out}");
    let _ = echo.child.wait();
}

/// After a run, sonde waits for a regular scraper's next scrape to take the final values (three
/// of its intervals, 30 s at most); Ctrl-C ends that wait at once, the summary printed.
#[test]
fn ctrl_c_ends_the_wait_for_a_final_scrape() {
    let echo = sonde_echo("127.0.0.1:0");
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut ping = KillOnDrop(
        sonde()
            .args(["ping", &echo.addr, "-r", "10", "-d", "3s", "--json"])
            .args(["--metrics", &metrics])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(&metrics).is_err() {
        assert!(started.elapsed() < Duration::from_secs(3), "no endpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Two scrapes 2 s apart: a scraper, whose next scrape sonde would wait up to 6 s for.
    scrape(&metrics);
    std::thread::sleep(Duration::from_secs(2));
    scrape(&metrics);
    std::thread::sleep(Duration::from_millis(1_500));
    let signalled = Instant::now();
    let (out, status) = signal_and_read(&mut ping.0, "INT");
    assert!(status.success(), "{out}");
    let waited = signalled.elapsed();
    assert!(
        waited < Duration::from_millis(1_500),
        "ended {waited:?} after Ctrl-C"
    );
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(u(&s, "received") >= 20, "{s}");
}
