//! Long runs keep memory flat, in the reflector and in the pinger: one minute at 50 000 probes/s
//! on loopback (3 million probes), resident memory read from /proc at 10 s and at 55 s; and a
//! pinger of 500 targets, a tenth of them swapped every second, scraped for metrics, compared at
//! ten times the probes. Bounded in time and count; stop by themselves.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Resident set size of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[test]
fn a_minute_at_50k_per_second_keeps_rss_flat() {
    if !std::path::Path::new("/proc/self/status").exists() {
        skip("no /proc to read memory from");
        return;
    }
    let echo = sonde_echo("127.0.0.1:0");
    let ping = sonde()
        .args([
            "ping",
            &echo.addr,
            "--rate",
            "50000",
            "--duration",
            "60s",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // (Bounded by its own --duration: no need to kill it if an assertion fails first.)
    let started = Instant::now();
    let sample = |at: u64| {
        std::thread::sleep(Duration::from_secs(at).saturating_sub(started.elapsed()));
        (rss_kib(echo.child.id()), rss_kib(ping.id()))
    };
    let early = sample(10);
    let late = sample(55);
    let out = ping.wait_with_output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "soak: echo RSS {} -> {} KiB, pinger RSS {} -> {} KiB; {} sent, {:.4}% loss",
        early.0,
        late.0,
        early.1,
        late.1,
        u(&s, "sent"),
        f(&s, "loss_pct")
    );
    // Flat: at most 2 MiB of growth over 45 s (2.25 million probes), allocator noise included.
    assert!(late.0 <= early.0 + 2048, "echo grew: {early:?} -> {late:?}");
    assert!(
        late.1 <= early.1 + 2048,
        "pinger grew: {early:?} -> {late:?}"
    );
    assert!(u(&s, "sent") >= 2_900_000, "{s}");
    assert!(f(&s, "loss_pct") < 1.0, "{s}");
}

/// Targets `first..first + n` of a numbering over 127.1.0.0/16 (the wildcard echo answers each
/// from the address asked), one line each.
fn target_lines(first: usize, n: usize, port: &str) -> String {
    (first..first + n)
        .map(|i| format!("127.1.{}.{}:{port} name=t{i}\n", i / 250, 1 + i % 250))
        .collect()
}

#[test]
fn targets_churning_under_metrics_keep_rss_flat() {
    if !std::path::Path::new("/proc/self/status").exists() {
        skip("no /proc to read memory from");
        return;
    }
    let echo = json_echo(
        "0.0.0.0:0",
        &["--limit-per-source", "off", "--limit-total", "off"],
    );
    let port = echo.addr.rsplit(':').next().unwrap().to_string();
    let dir = std::env::temp_dir().join(format!("sonde-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("targets");
    std::fs::write(&file, target_lines(0, 500, &port)).unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let mut ping = sonde()
        .args(["ping", "--targets", file.to_str().unwrap(), "-r", "20"])
        .args(["--metrics", &metrics, "--duration", "56s", "--json", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read as it comes: the summary of 500 targets is more than a pipe holds.
    let mut stdout = ping.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
        out
    });
    // Every second a tenth of the targets is swapped for others (SIGHUP): 50 stop, 50 start;
    // Prometheus's part is played by a scrape every 5 s.
    let started = Instant::now();
    let mut samples = Vec::new();
    for second in 1..55u64 {
        std::thread::sleep(Duration::from_secs(second).saturating_sub(started.elapsed()));
        let first = (second as usize % 2) * 50;
        std::fs::write(&file, target_lines(first, 500, &port)).unwrap();
        signal(&ping, "HUP");
        if second % 5 == 0 {
            assert!(scrape(&metrics).contains("sonde_probes_sent_total"));
        }
        samples.push(rss_kib(ping.id()));
    }
    // A regular scraper is waited for at the end: scrape until the final values are served.
    while ping.try_wait().unwrap().is_none() {
        let _ = std::panic::catch_unwind(|| scrape(&metrics));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(ping.wait().unwrap().success());
    let s: serde_json::Value = serde_json::from_str(&reader.join().unwrap()).unwrap();
    // Each second's allocations come and go: the most of seconds 4-5 (a target keeps its first
    // 64 round trips as they are, 3.2 s at 20/s, then in its histogram) against the most of
    // 50-53, ten times the probes later.
    let early = samples[3..5].iter().max().copied().unwrap();
    let late = samples[49..53].iter().max().copied().unwrap();
    eprintln!("churn soak: RSS each second {samples:?} KiB");
    eprintln!(
        "churn soak: pinger RSS {early} -> {late} KiB; {} sent, {:.4}% loss, {} targets at the end",
        u(&s, "sent"),
        f(&s, "loss_pct"),
        s["targets"].as_array().unwrap().len()
    );
    assert_eq!(s["targets"].as_array().unwrap().len(), 500);
    // Ten times the probes, targets churning all along, scraped: at most 10% more.
    assert!(
        late * 10 <= early * 11,
        "pinger grew: {early} -> {late} KiB"
    );
    // (The summary of 500 targets is too long for a message: the figures alone.)
    let said = format!(
        "sent {} received {} lost {} foreign {} in flight {}",
        u(&s, "sent"),
        u(&s, "received"),
        u(&s, "lost"),
        u(&s, "foreign"),
        u(&s, "in_flight")
    );
    assert!(u(&s, "sent") >= 500_000, "{said}");
    // A removed target's probes out are still answered: nothing foreign, nothing lost.
    assert_eq!(u(&s, "foreign"), 0, "{said}");
    assert!(f(&s, "loss_pct") < 0.1, "{said}");
}
