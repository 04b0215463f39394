//! Targets that change under a running pinger: `--reload` and SIGHUP re-read `--targets FILE`;
//! new targets start, removed ones stop and their series leave the metrics; a bad file keeps
//! the targets there are.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Stdio};
use std::time::{Duration, Instant};

/// `sonde_probes_sent_total` by target, as the endpoint says now.
fn sent_by_target(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| l.starts_with("sonde_probes_sent_total{"))
        .map(|l| {
            let target = l
                .split("target=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let value = l.rsplit(' ').next().unwrap().parse().unwrap();
            (target.to_string(), value)
        })
        .collect()
}

/// Waits (5 s at most) until `line` appears on the pinger's stderr; returns the lines seen.
fn wait_for_line(stderr: &mut BufReader<ChildStderr>, says: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        let found = line.contains(says);
        seen.push(line);
        if found {
            return seen;
        }
    }
    panic!("no {says:?} on stderr: {seen:?}");
}

struct Pinger {
    child: Child,
    stderr: BufReader<ChildStderr>,
    metrics: String,
}

fn pinger(file: &str, extra: &[&str]) -> Pinger {
    let mut child = sonde()
        .args([
            "ping",
            "--targets",
            file,
            "-r",
            "50",
            "--json",
            "--metrics",
            "0",
        ])
        .args(["--duration", "30s", "--timeout", "300ms"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let banner = wait_for_line(&mut stderr, "metrics at");
    let metrics = banner
        .last()
        .unwrap()
        .split("http://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    Pinger {
        child,
        stderr,
        metrics,
    }
}

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sonde-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_changed_file_starts_new_targets_stops_removed_ones_and_their_series_go() {
    let a = sonde_echo("127.0.0.1:0");
    let b = sonde_echo("127.0.0.2:0");
    let file = temp_file("watched");
    std::fs::write(&file, format!("{} name=first\n", a.addr)).unwrap();
    let mut p = pinger(file.to_str().unwrap(), &["--reload"]);
    std::thread::sleep(Duration::from_millis(1500));
    let before = sent_by_target(&scrape(&p.metrics));
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].0, a.addr);
    // The file changes: b replaces a.
    std::fs::write(&file, format!("{} name=second\n", b.addr)).unwrap();
    let said = wait_for_line(&mut p.stderr, "reloaded");
    assert!(
        said.last().unwrap().contains("1 new, 1 removed"),
        "{said:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    let text = scrape(&p.metrics);
    let after = sent_by_target(&text);
    assert_eq!(after.len(), 1, "a's series left: {text}");
    assert_eq!(after[0].0, b.addr);
    assert!(after[0].1 > 0.0, "b is probed: {text}");
    assert!(text.contains("name=\"second\""), "{text}");
    // A file that does not read keeps the targets there are.
    std::fs::write(&file, "not-an-address\n").unwrap();
    let said = wait_for_line(&mut p.stderr, "reload:");
    assert!(
        said.last().unwrap().contains("keeping the 1 targets"),
        "{said:?}"
    );
    // Nor does one that the start would have refused (port 0).
    std::fs::write(&file, format!("{}\n127.0.0.3:0\n", b.addr)).unwrap();
    let said = wait_for_line(&mut p.stderr, "reload:");
    let last = said.last().unwrap();
    assert!(
        last.contains("127.0.0.3:0: port 0 cannot be pinged") && last.contains("keeping the 1"),
        "{said:?}"
    );
    // SIGHUP: both, and a's counts start again.
    std::fs::write(&file, format!("{}\n{}\n", a.addr, b.addr)).unwrap();
    signal(&p.child, "HUP");
    wait_for_line(&mut p.stderr, "reloaded");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(sent_by_target(&scrape(&p.metrics)).len(), 2);
    let (out, status) = signal_and_read(&mut p.child, "INT");
    assert!(status.success());
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    let targets = s["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 2, "{s}");
    let listed: u64 = targets.iter().map(|t| u(t, "sent")).sum();
    assert!(
        u(&s, "sent") > listed,
        "a's first stint counts in the total: {s}"
    );
    assert_eq!(u(&s, "foreign"), 0);
    assert_eq!(
        u(&s, "sent"),
        u(&s, "received") + u(&s, "lost") + u(&s, "late") + u(&s, "in_flight"),
        "{s}"
    );
}

#[test]
fn without_a_file_or_with_a_count_there_is_nothing_to_reload() {
    let out = run(&["ping", "127.0.0.1:9", "--reload"]);
    assert_eq!(out.status.code(), Some(2));
    let file = temp_file("counted");
    std::fs::write(&file, "127.0.0.1:9\n").unwrap();
    let out = run(&[
        "ping",
        "--targets",
        file.to_str().unwrap(),
        "--reload",
        "-c",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--count"));
}
