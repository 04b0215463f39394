//! The subcommands that work on files rather than sockets: `merge`, `plot`, and the shell
//! completions and manual page generated from the clap definitions.

use super::args::{Cli, MergeArgs, PlotArgs};
use crate::error::Error;
use crate::output::{export, merge, out, plot, report};

/// `sonde merge`: interval logs into one summary and one distribution.
pub(super) fn merge(args: MergeArgs) -> Result<(), Error> {
    let (summary, total) = merge::merge(&args.logs)?;
    out(&if args.json {
        report::json(&summary) + "\n"
    } else {
        report::merge_text(&summary)
    });
    let hgrm = export::hgrm::render(&total.histogram());
    export::write_all("--export-hgrm", &args.export_hgrm, &hgrm)
}

/// `sonde plot`: saved results charted, several inputs on one chart.
pub(super) fn plot(args: PlotArgs) -> Result<(), Error> {
    if args.label.len() > args.inputs.len() {
        return Err(Error::config("--label", "more labels than inputs"));
    }
    let mut runs = Vec::new();
    for (i, path) in args.inputs.iter().enumerate() {
        let mut run = plot::Run::load(path)?;
        if let Some(label) = args.label.get(i) {
            run.label = label.clone();
        }
        runs.push(run);
    }
    plot::render("--output", &args.output, &args.title, &runs)
}

pub(super) fn completions(shell: clap_complete::Shell) -> Result<(), Error> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "sonde", &mut script);
    out(&String::from_utf8_lossy(&script));
    Ok(())
}

pub(super) fn man() -> Result<(), Error> {
    let mut page = Vec::new();
    clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
        .render(&mut page)
        .map_err(|e| Error::Setup("render the manual page", e))?;
    out(&String::from_utf8_lossy(&page));
    Ok(())
}
