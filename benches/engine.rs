//! Criterion benches of the hot paths: probe codec, timer wheel, histogram recording, and an
//! end-to-end loopback echo across payload sizes (`cargo bench`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sonde::config::{Pace, PingConfig};
use sonde::model::Latency;
use sonde::wire::{fill_padding, ProbeHeader};
use sonde::{Echo, Engine, Pinger, Wheel};
use std::hint::black_box;

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    let mut buf = vec![0u8; 64];
    fill_padding(&mut buf, 42);
    let mut seq = 0u64;
    group.bench_function("encode", |b| {
        b.iter(|| {
            seq += 1;
            ProbeHeader {
                session: 42,
                seq,
                send_ns: seq * 10,
            }
            .encode(black_box(&mut buf));
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| ProbeHeader::decode(black_box(&buf)).unwrap())
    });
    group.finish();
}

fn wheel(c: &mut Criterion) {
    const TIMERS: u64 = 1_000_000;
    let mut group = c.benchmark_group("timer_wheel");
    group.throughput(Throughput::Elements(TIMERS));
    group.sample_size(10);
    group.bench_function("insert_expire_1e6", |b| {
        b.iter(|| {
            let mut wheel = Wheel::new();
            // Deadlines spread over 10 000 ticks (1 s at 100 us a tick), as a pinger's are.
            for i in 0..TIMERS {
                wheel.insert(i / 100 + 10_000, i);
            }
            let mut fired = 0u64;
            let mut now = 0;
            while fired < TIMERS {
                now += 64;
                while wheel.poll(now).is_some() {
                    fired += 1;
                }
            }
            fired
        })
    });
    group.finish();
}

fn histogram(c: &mut Criterion) {
    let mut group = c.benchmark_group("latency");
    group.throughput(Throughput::Elements(1));
    let mut latency = Latency::new();
    let mut v = 1_000u64;
    group.bench_function("record", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            latency.record(black_box(5_000 + (v >> 44)));
        })
    });
    group.finish();
}

/// Round trips through sonde's own echo in one poll loop, window 32, per payload size.
fn loopback(c: &mut Criterion) {
    const PROBES: u64 = 20_000;
    let mut group = c.benchmark_group("loopback_echo");
    group.sample_size(10);
    for size in [16usize, 64, 512, 1400, 8972] {
        let size = size.max(sonde::wire::HEADER_LEN);
        group.throughput(Throughput::Elements(PROBES));
        group.bench_with_input(BenchmarkId::new("payload", size), &size, |b, &size| {
            b.iter(|| {
                let mut echo = Echo::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                let mut cfg = PingConfig::new(echo.local_addr());
                cfg.size = size;
                cfg.count = Some(PROBES);
                cfg.pace = Pace::Window;
                cfg.inflight = Some(32);
                let mut pinger = Pinger::new(cfg).unwrap();
                Engine::new()
                    .unwrap()
                    .run(&mut [&mut echo, &mut pinger])
                    .unwrap();
                assert_eq!(pinger.counters().received, PROBES);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec, wheel, histogram, loopback);
criterion_main!(benches);
