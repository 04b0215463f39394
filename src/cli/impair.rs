//! `sonde impair`: arguments to two impairment specs (one per direction), then the relay.

use super::args::{Direction, ImpairArgs};
use crate::config::{ImpairSpec, LossModel, RelayConfig};
use crate::engine::{Engine, Role};
use crate::error::Error;
use crate::output::{out, report};
use crate::roles::pinger::random_session;
use crate::roles::Relay;

/// `sonde impair`: the relay, until Ctrl-C.
pub(super) fn run(args: ImpairArgs) -> Result<(), Error> {
    let loss = match (args.loss, args.loss_model) {
        (Some(p), _) => LossModel::Bernoulli(p),
        (None, Some(model)) => model,
        (None, None) => LossModel::None,
    };
    let spec = ImpairSpec {
        loss,
        delay_ns: args.delay.map_or(0, |d| d.as_nanos() as u64),
        jitter_ns: args.jitter.map_or(0, |d| d.as_nanos() as u64),
        reorder: args.reorder.unwrap_or(0.0),
        duplicate: args.duplicate.unwrap_or(0.0),
        rate_bps: args.rate,
        limit: args.limit,
    };
    if args.limit == 0 {
        return Err(Error::config("--limit", "must be at least 1"));
    }
    let clear = ImpairSpec {
        limit: args.limit,
        ..ImpairSpec::default()
    };
    let (upstream, downstream) = match args.direction {
        Direction::Both => (spec.clone(), spec),
        Direction::Up => (spec, clear),
        Direction::Down => (clear, spec),
    };
    let seed = args.seed.unwrap_or_else(random_session);
    let exposed = !args.listen.ip().is_loopback();
    let mut relay = Relay::bind(RelayConfig {
        listen: args.listen,
        forward: args.forward,
        upstream,
        downstream,
        seed,
        policy: args.guard.policy(exposed, 1),
        max_clients: args.max_clients as usize,
        client_idle: args.client_idle,
    })?;
    let s = relay.summary();
    let rate = |limit: Option<f64>| limit.map_or("no limit".to_string(), |r| format!("{r}/s"));
    let banner = format!(
        "sonde impair: listening on {}, forwarding to {}; up: {}; down: {}; seed {seed}\n\
         sonde impair: up to {} clients, forgotten after {} idle; per source {}, in all {}\n",
        s.listen,
        s.forward,
        s.upstream_spec,
        s.downstream_spec,
        s.clients.limit,
        humantime::format_duration(args.client_idle),
        rate(s.per_source_limit_pps),
        rate(s.total_limit_pps),
    );
    serve(
        &mut relay,
        (!args.quiet).then_some(banner),
        args.json,
        Relay::summary,
        report::relay_text,
    )
}

/// Runs one service role until Ctrl-C or SIGTERM, then prints its counters as JSON or text.
/// The banner goes out once the signal handlers are in place, so a Ctrl-C sent on seeing it is
/// never the default, silent one; with JSON it goes to stderr, and stdout holds the counters.
fn serve<R: Role, S: serde::Serialize>(
    role: &mut R,
    banner: Option<String>,
    json: bool,
    summarize: impl Fn(&R) -> S,
    text: impl Fn(&S) -> String,
) -> Result<(), Error> {
    let mut engine = Engine::new()?;
    engine.stop_on_signals()?;
    match banner {
        Some(banner) if json => eprint!("{banner}"),
        Some(banner) => out(&banner),
        None => {}
    }
    let result = engine.run(&mut [role]);
    let summary = summarize(role);
    out(&if json {
        report::json(&summary) + "\n"
    } else {
        text(&summary)
    });
    result.map(|_| ())
}
