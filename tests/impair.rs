//! Known answers: what `sonde impair` is told to do to a link, `sonde ping` must measure.
//! Every run is seeded, bounded, and on loopback. Tolerances are 99.9% binomial intervals where
//! the quantity is a proportion.

mod common;

use common::*;

/// `sonde echo` behind `sonde impair` with `impair_args`; returns (echo, relay).
fn impaired_echo(impair_args: &[&str]) -> (Server, Server) {
    let echo = sonde_echo("127.0.0.1:0");
    let mut cmd = sonde();
    cmd.args(["impair", "--listen", "127.0.0.1:0", "--forward", &echo.addr]);
    cmd.args(impair_args);
    let relay = spawn_listening(cmd);
    (echo, relay)
}

/// Half-width of the 99.9% normal interval of a proportion `q` over `n` trials.
fn ci999(q: f64, n: u64) -> f64 {
    3.29 * (q * (1.0 - q) / n as f64).sqrt()
}

fn ping(relay: &Server, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["ping", relay.addr.as_str()];
    args.extend_from_slice(extra);
    run_json(&args)
}

#[test]
fn bernoulli_loss_each_way_compounds_over_the_round_trip() {
    for (pct, p) in [("10%", 0.10f64), ("2%", 0.02)] {
        let (_echo, relay) = impaired_echo(&["--loss", pct, "--seed", "42"]);
        let n = 10_000u64;
        let s = ping(&relay, &["--count", "10000", "--rate", "10000"]);
        assert_eq!(u(&s, "sent"), n);
        assert_eq!(u(&s, "not_sent"), 0);
        let expected = 1.0 - (1.0 - p).powi(2);
        let measured = u(&s, "lost") as f64 / n as f64;
        assert!(
            (measured - expected).abs() <= ci999(expected, n),
            "loss {pct} each way: measured {measured}, expected {expected}"
        );
        assert_eq!(u(&s, "late"), 0);
    }
}

#[test]
fn delay_each_way_doubles_into_the_rtt() {
    let (_echo, relay) = impaired_echo(&["--delay", "5ms"]);
    let s = ping(&relay, &["--count", "400", "--rate", "200"]);
    assert_eq!(u(&s, "received"), 400);
    let rtt = &s["rtt"];
    assert!(f(rtt, "min_us") >= 10_000.0, "{rtt}");
    // The relay wakes on a timerfd: the median stays within 1.5 ms of 2d on this VM.
    assert!(f(rtt, "p50_us") <= 11_500.0, "{rtt}");
}

#[test]
fn duplication_upstream_shows_as_duplicates() {
    let (_echo, relay) = impaired_echo(&["--duplicate", "10%", "--direction", "up", "--seed", "7"]);
    let n = 5_000u64;
    let s = ping(&relay, &["--count", "5000", "--rate", "5000"]);
    assert_eq!(u(&s, "received"), n);
    let share = u(&s, "duplicates") as f64 / n as f64;
    assert!((share - 0.1).abs() <= ci999(0.1, n) + 0.001, "{share}");
}

#[test]
fn reordering_upstream_shows_as_reordered() {
    // 10% of datagrams skip a 5 ms delay; at 1000/s each overtakes the ~5 sent before it. A
    // delayed probe is reordered if any of the next 5 skipped: (1-q)(1-(1-q)^5) = 0.369.
    let (_echo, relay) = impaired_echo(&[
        "--delay",
        "5ms",
        "--reorder",
        "10%",
        "--direction",
        "up",
        "--seed",
        "3",
    ]);
    let n = 3_000u64;
    let s = ping(&relay, &["--count", "3000", "--rate", "1000"]);
    assert_eq!(u(&s, "received"), n);
    let share = u(&s, "reordered") as f64 / n as f64;
    assert!((share - 0.369).abs() < 0.06, "reordered share {share}");
}

#[test]
fn gilbert_elliott_bursts_have_the_model_mean_length() {
    // p = 1%, r = 30%: mean burst 1/r = 3.33 probes, losses only in the bad state.
    let (_echo, relay) = impaired_echo(&[
        "--loss-model",
        "gemodel:1,30",
        "--direction",
        "up",
        "--seed",
        "11",
    ]);
    let s = ping(&relay, &["--count", "40000", "--rate", "20000"]);
    assert_eq!(u(&s, "not_sent"), 0);
    let bursts = &s["loss_bursts"];
    let mean = f(bursts, "mean_length");
    assert!(u(bursts, "count") > 200, "{bursts}");
    assert!(
        (mean - 1.0 / 0.3).abs() < 0.2 / 0.3,
        "mean burst {mean}: {bursts}"
    );
    assert!(
        u(bursts, "max_length") >= 8,
        "geometric bursts have a long tail: {bursts}"
    );
    // Bernoulli loss of the same average would give bursts of about 1.03.
}

#[test]
fn impair_rejects_bad_values_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--loss", "120%"], "--loss"),
        (&["--loss", "lots"], "--loss"),
        (&["--loss-model", "gemodel:1,0"], "--loss-model"),
        (&["--loss-model", "bursty"], "--loss-model"),
        (&["--reorder", "5%"], "--delay"),
        (&["--rate", "10parsecs"], "--rate"),
        (&["--limit", "0"], "--limit"),
        (&["--direction", "sideways"], "--direction"),
    ];
    for (extra, flag) in cases {
        let mut args = vec![
            "impair",
            "--listen",
            "127.0.0.1:0",
            "--forward",
            "127.0.0.1:9",
        ];
        args.extend_from_slice(extra);
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains(flag),
            "{extra:?} should name {flag}: {stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn link_rate_adds_serialisation_delay() {
    // 1000-byte datagrams on a 1 Mbit/s link take 8 ms each; 50/s stays below capacity.
    let (_echo, relay) = impaired_echo(&["--rate", "1mbit", "--direction", "up"]);
    let s = ping(&relay, &["--count", "50", "--rate", "50", "--size", "1000"]);
    assert_eq!(u(&s, "received"), 50);
    let rtt = &s["rtt"];
    assert!(f(rtt, "min_us") >= 8_000.0, "{rtt}");
    assert!(
        f(rtt, "p50_us") < 10_000.0,
        "no queue builds below capacity: {rtt}"
    );
}

#[test]
fn link_rate_over_capacity_queues_then_drops_at_the_limit() {
    // 250/s of 1000 bytes into 1 Mbit/s (125/s): the queue fills to --limit, then half is lost.
    let (_echo, relay) = impaired_echo(&["--rate", "1mbit", "--limit", "20", "--direction", "up"]);
    let s = ping(
        &relay,
        &["--count", "500", "--rate", "250", "--size", "1000"],
    );
    let loss = f(&s, "loss_pct");
    assert!((40.0..=60.0).contains(&loss), "loss {loss}%: {s}");
    // A full queue of 20 datagrams is 160 ms of waiting.
    assert!(f(&s["rtt"], "p90_us") >= 100_000.0, "{s}");
}
