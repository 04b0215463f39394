//! Reports people read and tools consume: interval lines, the JSON stream, the exports read
//! back, merged logs, plots, thresholds, completions and the man page. Loopback only, bounded.

mod common;

use common::*;
use hdrhistogram::Histogram;
use sonde::export::{csv, hgrm};
use std::path::{Path, PathBuf};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sonde-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout_of(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "sonde {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Probe rows of a CSV export (one per probe), and its late/duplicate rows.
fn csv_rows(path: &str) -> (Vec<csv::Row>, Vec<csv::Row>) {
    let text = read(path);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(csv::HEADER.trim_end()));
    let rows: Vec<csv::Row> = lines
        .map(|l| csv::parse_row(l).unwrap_or_else(|| panic!("bad row {l:?}")))
        .collect();
    rows.into_iter()
        .partition(|r| !matches!(r.status.as_str(), "late" | "duplicate"))
}

#[test]
fn interval_lines_and_the_json_stream_add_up_to_the_summary() {
    let run = [
        "loopback",
        "--flows",
        "2",
        "-d",
        "1500ms",
        "--rate",
        "2000",
        "--interval",
        "500ms",
    ];
    let text = stdout_of(&run);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
    // Three whole intervals, and a short last one while the last replies come in.
    assert!((3..=4).contains(&lines.len()), "{text}");
    assert!(lines[0].starts_with("[   0.00-   0.50 s]"), "{}", lines[0]);
    assert!(lines[2].contains("% loss") && lines[2].contains("rtt p50"));

    let stream = stdout_of(&[&run[..], &["--format", "jsonl"]].concat());
    let events: Vec<serde_json::Value> = stream
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let (last, intervals) = events.split_last().unwrap();
    assert_eq!(last["event"], "summary");
    let summary = &last["data"];
    assert_eq!(
        intervals.len() as f64,
        (f(summary, "duration_s") / 0.5).ceil()
    );
    for key in ["sent", "received"] {
        let total: u64 = intervals.iter().map(|i| u(&i["data"], key)).sum();
        assert_eq!(total, u(summary, key), "{key}");
    }
    let counted: u64 = intervals
        .iter()
        .map(|i| u(&i["data"]["rtt"], "count"))
        .sum();
    assert_eq!(counted, u(&summary["rtt"], "count"));
    assert!(intervals.iter().all(|i| i["event"] == "interval"));
}

#[test]
fn csv_has_one_row_per_probe_streamed_in_order_of_verdicts() {
    let dir = TempDir::new("csv");
    let csv_path = dir.file("probes.csv");
    let echo = sonde_echo("127.0.0.1:0");
    let s = run_json(&[
        "ping",
        &echo.addr,
        "--count",
        "3000",
        "--rate",
        "20000",
        "--export-csv",
        &csv_path,
    ]);
    let (probes, extra) = csv_rows(&csv_path);
    assert_eq!(probes.len() as u64, u(&s, "sent") + u(&s, "not_sent"));
    assert_eq!(extra.len() as u64, u(&s, "late") + u(&s, "duplicates"));
    let mut seqs: Vec<u64> = probes.iter().map(|r| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..3000).collect::<Vec<_>>());
    let received = probes.iter().filter(|r| r.rtt_ns.is_some()).count() as u64;
    assert_eq!(received, u(&s, "received"));
    for r in &probes {
        assert!(r.sent_ns >= r.scheduled_ns, "{r:?}");
        // At 20 000/s probe n is due at n x 50 us.
        assert_eq!(r.scheduled_ns, r.seq * 50_000, "{r:?}");
    }
}

/// `sonde echo` behind `sonde impair --loss PCT` (each way, seeded); returns (echo, relay).
fn lossy_echo(pct: &str, seed: &str) -> (Server, Server) {
    let echo = sonde_echo("127.0.0.1:0");
    let mut cmd = sonde();
    cmd.args(["impair", "--listen", "127.0.0.1:0", "--forward", &echo.addr]);
    cmd.args(["--loss", pct, "--seed", seed]);
    let relay = spawn_listening(cmd);
    (echo, relay)
}

#[test]
fn csv_marks_losses_and_rows_still_equal_probes() {
    // A relay that drops 20% each way: lost rows appear, and the count still adds up.
    let dir = TempDir::new("csv-loss");
    let csv_path = dir.file("probes.csv");
    let (_echo, relay) = lossy_echo("20%", "3");
    let s = run_json(&[
        "ping",
        &relay.addr,
        "--count",
        "1000",
        "--rate",
        "5000",
        "--timeout",
        "200ms",
        "--export-csv",
        &csv_path,
    ]);
    let (probes, _) = csv_rows(&csv_path);
    assert_eq!(probes.len() as u64, u(&s, "sent"));
    let lost = probes.iter().filter(|r| r.status == "lost").count() as u64;
    assert!(lost > 0);
    assert_eq!(lost, u(&s, "lost") + u(&s, "late"));
}

#[test]
fn an_interval_log_merged_back_gives_the_live_distribution() {
    let dir = TempDir::new("hlog");
    let (log, live_hgrm, merged_hgrm) = (
        dir.file("run.hlog"),
        dir.file("live.hgrm"),
        dir.file("merged.hgrm"),
    );
    let live = run_json(&[
        "loopback",
        "--flows",
        "2",
        "-d",
        "2s",
        "--rate",
        "5000",
        "--interval",
        "250ms",
        "--export-hlog",
        &log,
        "--export-hgrm",
        &live_hgrm,
    ]);
    assert!(read(&log).starts_with("#sonde round-trip times"));
    let merged = run_json(&["merge", &log, "--export-hgrm", &merged_hgrm]);
    assert_eq!(
        u(&merged, "intervals") as f64,
        (f(&live, "duration_s") / 0.25).ceil()
    );
    // The same histogram, byte for byte in HdrHistogram's own text format...
    assert_eq!(read(&live_hgrm), read(&merged_hgrm));
    // ...and the same percentiles (the live ones are clamped to the exact min and max, so they
    // agree to the histogram's precision, 3 significant digits).
    let (l, m) = (&live["rtt"], &merged["rtt"]);
    assert_eq!(u(l, "count"), u(m, "count"));
    for key in ["p50_us", "p90_us", "p99_us", "p999_us"] {
        let (a, b) = (f(l, key), f(m, key));
        assert!(
            (a - b).abs() <= a * 1e-3 + 1e-3,
            "{key}: live {a}, merged {b}"
        );
    }
}

#[test]
fn merging_two_runs_equals_the_histogram_of_both() {
    let dir = TempDir::new("merge2");
    let mut all = Histogram::<u64>::new_with_bounds(1, sonde::model::MAX_NS, 3).unwrap();
    let mut logs = Vec::new();
    for run_name in ["a", "b"] {
        let (log, csv_path) = (
            dir.file(&format!("{run_name}.hlog")),
            dir.file(&format!("{run_name}.csv")),
        );
        let size = if run_name == "a" { "64" } else { "1400" };
        run_json(&[
            "loopback",
            "--flows",
            "1",
            "--count",
            "4000",
            "--rate",
            "8000",
            "--size",
            size,
            "--export-hlog",
            &log,
            "--export-csv",
            &csv_path,
        ]);
        let (probes, _) = csv_rows(&csv_path);
        for r in probes
            .iter()
            .filter(|r| r.status == "received" || r.status == "reordered")
        {
            all.record(r.rtt_ns.unwrap()).unwrap();
        }
        logs.push(log);
    }
    let merged_hgrm = dir.file("merged.hgrm");
    let merged = run_json(&["merge", &logs[0], &logs[1], "--export-hgrm", &merged_hgrm]);
    assert_eq!(u(&merged["rtt"], "count"), all.len());
    assert_eq!(read(&merged_hgrm), hgrm::render(&all));
}

fn svg_texts(path: &str) -> Vec<String> {
    let text = read(path);
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect()
}

#[test]
fn a_run_plots_its_timeline_losses_and_distribution() {
    let dir = TempDir::new("plot");
    let svg = dir.file("run.svg");
    let json = dir.file("run.json");
    let (_echo, relay) = lossy_echo("5%", "9");
    let out = run(&[
        "ping",
        &relay.addr,
        "--count",
        "2000",
        "--rate",
        "2000",
        "--timeout",
        "200ms",
        "-q",
        "--plot",
        &svg,
        "--export-json",
        &json,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let texts = svg_texts(&svg);
    for expected in [
        "RTT over time",
        "time (s)",
        "RTT (ms)",
        "RTT percentile distribution",
        "percentile",
        "99%",
    ] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected:?} not in {texts:?}"
        );
    }
    let legend_lost = texts
        .iter()
        .find(|t| t.contains(": lost ("))
        .expect("a loss series");
    assert!(!legend_lost.ends_with("(0)"), "{legend_lost}");
    assert!(
        texts.iter().any(|t| t.contains("p50 per interval")),
        "{texts:?}"
    );

    // Comparing saved runs: one series per input, named by --label.
    let csv_path = dir.file("b.csv");
    run_json(&[
        "loopback",
        "--flows",
        "1",
        "--count",
        "1000",
        "--rate",
        "5000",
        "--export-csv",
        &csv_path,
    ]);
    let cmp = dir.file("cmp.svg");
    stdout_of(&[
        "plot",
        &json,
        &csv_path,
        "-o",
        &cmp,
        "--label",
        "through impair",
        "--label",
        "direct",
    ]);
    let texts = svg_texts(&cmp);
    for expected in ["through impair", "direct", "direct: RTT per probe"] {
        assert!(
            texts.iter().any(|t| t == expected),
            "{expected:?} not in {texts:?}"
        );
    }
}

#[test]
fn thresholds_exit_3_and_name_what_was_crossed() {
    let echo = sonde_echo("127.0.0.1:0");
    let base = [
        "ping",
        echo.addr.as_str(),
        "--count",
        "200",
        "--rate",
        "10000",
        "-q",
    ];
    let passing = run(&[&base[..], &["--fail-loss", "50%", "--fail-p99", "10s"]].concat());
    assert_eq!(passing.status.code(), Some(0));
    let failing = run(&[&base[..], &["--fail-p50", "1ns", "--fail-loss", "50%"]].concat());
    assert_eq!(failing.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&failing.stderr);
    assert!(
        stderr.contains("--fail-p50") && !stderr.contains("--fail-loss"),
        "{stderr}"
    );
    // The summary is still printed in full.
    assert!(String::from_utf8_lossy(&failing.stdout).contains("rtt p50/p90/p99/p99.9"));

    // Nothing received is not a pass for a latency threshold; loss above the limit fails.
    let port = free_port();
    let silent = format!("127.0.0.1:{port}");
    let lost = run(&[
        "ping",
        &silent,
        "--count",
        "3",
        "--rate",
        "100",
        "--timeout",
        "100ms",
        "-q",
        "--fail-p99",
        "1s",
        "--fail-loss",
        "1%",
    ]);
    assert_eq!(lost.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&lost.stderr);
    assert!(
        stderr.contains("no replies") && stderr.contains("--fail-loss"),
        "{stderr}"
    );
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.contains("export-hlog"), "{shell}: no --export-hlog");
    }
    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH sonde 1"),
        "{}",
        &man[..80]
    );
    assert!(man.contains("loopback"));
}

#[test]
fn bad_report_arguments_name_the_flag_and_exit_2() {
    let dir = TempDir::new("bad");
    let garbage = dir.file("garbage.hlog");
    std::fs::write(&garbage, "#not a log\nhello,world\n").unwrap();
    let empty = dir.file("empty.hlog");
    std::fs::write(&empty, "").unwrap();
    let missing_dir = Path::new(&dir.file("no-such-dir")).join("x.csv");
    let missing_dir = missing_dir.to_string_lossy();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["loopback", "--count", "10", "--export-csv", &missing_dir],
            "--export-csv",
        ),
        (
            vec!["loopback", "--count", "10", "--export-json", &missing_dir],
            "--export-json",
        ),
        (
            vec!["loopback", "--count", "10", "--plot", &missing_dir],
            "--plot",
        ),
        (
            vec!["loopback", "--count", "10", "--export-hgrm", &missing_dir],
            "--export-hgrm",
        ),
        (
            vec!["loopback", "--count", "10", "--interval", "0s"],
            "--interval",
        ),
        (
            vec!["loopback", "--count", "10", "--format", "xml"],
            "--format",
        ),
        (
            vec!["loopback", "--count", "10", "--fail-loss", "200%"],
            "--fail-loss",
        ),
        (
            vec!["loopback", "--count", "10", "--fail-p99", "soon"],
            "--fail-p99",
        ),
        (vec!["merge"], "LOG"),
        (vec!["merge", "/nonexistent/sonde.hlog"], "LOG"),
        (vec!["merge", &garbage], "LOG"),
        (vec!["merge", &empty], "LOG"),
        (vec!["plot", &garbage, "-o", "-"], "INPUT"),
        (vec!["plot", "/nonexistent/x.csv", "-o", "-"], "INPUT"),
        (vec!["completions", "tcsh"], "SHELL"),
    ];
    for (args, flag) in cases {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{args:?}: {stderr} does not name {flag}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        // Refused before any traffic: no run, no summary.
        assert!(out.stdout.is_empty(), "{args:?}: ran anyway");
    }
}
