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

/// `sonde impair --json` in front of `echo` with `args`: the relay, its counters read at the end
/// with [`stop_json`].
fn json_relay(echo: &Server, args: &[&str]) -> Server {
    let base = ["impair", "--listen", "127.0.0.1:0", "--forward", &echo.addr];
    json_server(&[&base[..], args].concat())
}

/// A ping through `relay` on its own thread (its own socket: another client).
fn ping_in_background(
    relay: &Server,
    extra: &[&str],
) -> std::thread::JoinHandle<serde_json::Value> {
    let mut args: Vec<String> = vec!["ping".into(), relay.addr.clone()];
    args.extend(extra.iter().map(|s| s.to_string()));
    std::thread::spawn(move || run_json(&args.iter().map(String::as_str).collect::<Vec<_>>()))
}

#[test]
fn clients_at_once_each_get_their_own_answers_and_a_stray_takes_nothing_over() {
    let echo = sonde_echo("127.0.0.1:0");
    let mut relay = json_relay(&echo, &[]);
    let runs: Vec<_> = (0..3)
        .map(|_| ping_in_background(&relay, &["-c", "3000", "-r", "2000", "-t", "500ms"]))
        .collect();
    // A stray sender in the middle of it: before, the relay answered whoever spoke last.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let stray = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..50 {
        stray.send_to(b"stray", &relay.addr).unwrap();
    }
    for run in runs {
        let s = run.join().unwrap();
        assert_eq!((u(&s, "received"), u(&s, "foreign")), (3000, 0), "{s}");
        assert_eq!(u(&s, "mismatched"), 0, "{s}");
    }
    let r = stop_json(&mut relay, "INT");
    assert_eq!(
        u(&r["clients"], "seen"),
        4,
        "three pingers and the stray: {r}"
    );
    assert_eq!(u(&r["upstream"], "delivered"), 3 * 3000 + 50, "{r}");
    let per_client = r["per_client"].as_array().unwrap();
    assert_eq!(per_client.len(), 4, "{r}");
    let answered = |c: &serde_json::Value| u(&c["downstream"], "delivered");
    let mut counts: Vec<u64> = per_client.iter().map(answered).collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![50, 3000, 3000, 3000], "{r}");
}

#[test]
fn each_clients_impairment_is_seeded_by_its_rank_and_reproducible() {
    // Two relays with one seed, each with two clients one after the other: the first clients
    // lose the same probes, the second ones too, and the two ranks lose differently.
    let echo = sonde_echo("127.0.0.1:0");
    let losses = || {
        let mut relay = json_relay(
            &echo,
            &["--loss", "20%", "--seed", "7", "--direction", "up"],
        );
        let lost: Vec<u64> = (0..2)
            .map(|_| {
                u(
                    &ping(&relay, &["-c", "2000", "-r", "5000", "-t", "300ms"]),
                    "lost",
                )
            })
            .collect();
        let r = stop_json(&mut relay, "INT");
        assert_eq!(u(&r["clients"], "seen"), 2, "{r}");
        lost
    };
    let (first, second) = (losses(), losses());
    assert_eq!(first, second, "same seed, same clients in the same order");
    assert_ne!(first[0], first[1], "each client has its own stream");
    for lost in first {
        let q = lost as f64 / 2000.0;
        assert!((q - 0.2).abs() < ci999(0.2, 2000), "{lost} of 2000");
    }
}

#[test]
fn the_client_table_is_bounded_and_idle_clients_are_forgotten() {
    let echo = sonde_echo("127.0.0.1:0");
    let mut relay = json_relay(&echo, &["--max-clients", "1", "--client-idle", "300ms"]);
    let long = ping_in_background(&relay, &["-c", "1000", "-r", "1000", "-t", "200ms"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The table is full while the first client runs: a second gets nothing.
    let s = ping(&relay, &["-c", "20", "-r", "100", "-t", "100ms"]);
    assert_eq!(u(&s, "received"), 0, "{s}");
    assert_eq!(u(&long.join().unwrap(), "received"), 1000);
    // Once the first has been idle long enough, a new client is served.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let s = ping(&relay, &["-c", "20", "-r", "100", "-t", "100ms"]);
    assert_eq!(u(&s, "received"), 20, "{s}");
    let r = stop_json(&mut relay, "INT");
    let c = &r["clients"];
    assert_eq!((u(c, "seen"), u(c, "swept")), (2, 1), "{r}");
    assert_eq!(u(c, "refused_table_full"), 20, "{r}");
    // The forgotten client's counts stay in the totals.
    assert_eq!(u(&r["upstream"], "received"), 1000 + 20, "{r}");
}

#[test]
fn the_guard_stands_in_front_of_the_relay() {
    let echo = sonde_echo("127.0.0.1:0");
    let mut relay = json_relay(&echo, &["--allow", "127.0.0.2/32"]);
    let s = ping(&relay, &["-c", "10", "-r", "100", "-t", "100ms"]);
    assert_eq!(u(&s, "received"), 0, "{s}");
    let s = ping(
        &relay,
        &[
            "-c",
            "10",
            "-r",
            "100",
            "-t",
            "100ms",
            "--bind",
            "127.0.0.2:0",
        ],
    );
    assert_eq!(u(&s, "received"), 10, "{s}");
    let r = stop_json(&mut relay, "INT");
    assert_eq!(u(&r["refused"], "not_allowed"), 10, "{r}");
    let mut relay = json_relay(&echo, &["--limit-per-source", "100"]);
    let s = ping(&relay, &["-c", "2000", "-r", "10000", "-t", "100ms"]);
    let r = stop_json(&mut relay, "INT");
    let limited = u(&r["refused"], "source_rate_limited");
    assert!(limited > 1500, "{r}");
    assert_eq!(u(&s, "received") + limited, 2000, "{s} {r}");
    // Relaying to itself is refused up front.
    let port = free_port();
    let me = format!("127.0.0.1:{port}");
    let out = run(&["impair", "--listen", &me, "--forward", &me]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--forward"), "{stderr}");
    let base = ["impair", "--listen", "127.0.0.1:0", "--forward", &echo.addr];
    for (args, flag) in [
        (&["--max-clients", "0"][..], "--max-clients"),
        (&["--client-idle", "soon"], "--client-idle"),
        (&["--limit-total", "-5"], "--limit-total"),
    ] {
        let out = run(&[&base[..], args].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn the_relay_serves_ipv6_clients_too() {
    let echo = sonde_echo("[::1]:0");
    let base = ["impair", "--listen", "[::1]:0", "--forward", &echo.addr];
    let mut relay = json_server(&[&base[..], &["--loss", "10%", "--seed", "3"]].concat());
    let runs: Vec<_> = (0..2)
        .map(|_| ping_in_background(&relay, &["-c", "2000", "-r", "4000", "-t", "300ms"]))
        .collect();
    let lost: Vec<u64> = runs
        .into_iter()
        .map(|r| u(&r.join().unwrap(), "lost"))
        .collect();
    let r = stop_json(&mut relay, "INT");
    assert_eq!(u(&r["clients"], "seen"), 2, "{r}");
    // 10% each way: 19% of the round trips, per client.
    for lost in lost {
        let q = lost as f64 / 2000.0;
        assert!((q - 0.19).abs() < ci999(0.19, 2000), "{lost} of 2000: {r}");
    }
}
