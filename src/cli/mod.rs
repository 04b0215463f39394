//! The command line: clap's view of it (`args.rs`, `parse.rs`) and, per subcommand, a short
//! composition — arguments to a typed config, the run, the outputs. Nothing else in the crate
//! depends on this module.

mod args;
mod echo;
mod files;
mod impair;
mod parse;
mod ping;
mod probe;
mod reload;
mod targets;

use crate::engine::Engine;
use crate::error::{Error, EXIT_USAGE};
use args::{Cli, Command};
use clap::Parser;

/// Parses the command line and runs it; returns the exit status.
pub(crate) fn main() -> i32 {
    crate::sys::steady_malloc();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("sonde: error: {e}");
            e.exit_code()
        }
    }
}

/// Prints a clap error as one line naming the flag; help and version go out as clap made them.
fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
        || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            EXIT_USAGE
        } else {
            0
        };
    }
    let rendered = e.render().to_string();
    let message = rendered
        .split("\n\n")
        .next()
        .unwrap_or(&rendered)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    eprintln!("sonde: error: {message} (see sonde --help)");
    EXIT_USAGE
}

fn run(cli: Cli) -> Result<i32, Error> {
    match cli.command {
        Command::Echo(args) => echo::run(args).map(|()| 0),
        Command::Ping(args) => ping::ping(args),
        Command::Loopback(args) => ping::loopback(args),
        Command::Impair(args) => impair::run(args).map(|()| 0),
        Command::Merge(args) => files::merge(args).map(|()| 0),
        Command::Plot(args) => files::plot(args).map(|()| 0),
        Command::Completions { shell } => files::completions(shell).map(|()| 0),
        Command::Man => files::man().map(|()| 0),
    }
}

/// A poll loop for one measurement thread: stops on Ctrl-C/SIGTERM like every other thread.
fn loop_for_thread(busy_poll: bool) -> Result<Engine, Error> {
    let mut engine = Engine::new()?;
    engine.stop_on_signals()?;
    engine.busy_poll(busy_poll);
    Ok(engine)
}
