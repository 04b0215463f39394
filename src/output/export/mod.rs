//! Files a run leaves behind, each written by its own exporter over plain data: the summary as
//! JSON, one CSV row per probe, the percentile distribution as `.hgrm` text and an HdrHistogram
//! interval log. `-` means standard output.

pub mod csv;
pub mod hgrm;
pub mod hlog;

use crate::error::{Error, FileOp};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Where an export goes: a file, or stdout for `-`.
pub(crate) type Sink = Box<dyn Write + Send>;

/// Opens `path` for writing (creating or truncating it), or stdout for `-`. `flag` names the
/// option in errors.
pub(crate) fn create(flag: &'static str, path: &str) -> Result<Sink, Error> {
    if path == "-" {
        return Ok(Box::new(BufWriter::new(io::stdout())));
    }
    let file = File::create(path).map_err(|e| Error::file(flag, FileOp::Create, path, e))?;
    Ok(Box::new(BufWriter::with_capacity(1 << 16, file)))
}

/// Reads a whole input file (`-` for stdin).
pub(crate) fn read(flag: &'static str, path: &str) -> Result<Vec<u8>, Error> {
    let result = if path == "-" {
        let mut buf = Vec::new();
        io::Read::read_to_end(&mut io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(Path::new(path))
    };
    result.map_err(|e| Error::file(flag, FileOp::Read, path, e))
}

/// Writes `text` to every sink in `paths`.
pub(crate) fn write_all(flag: &'static str, paths: &[String], text: &str) -> Result<(), Error> {
    write_each(flag, paths, |sink| sink.write_all(text.as_bytes()))
}

/// Writes `value` as one line of JSON to every sink in `paths`, as it is encoded (the summary
/// of ten thousand targets is megabytes: better not held whole).
pub(crate) fn write_json(
    flag: &'static str,
    paths: &[String],
    value: &impl serde::Serialize,
) -> Result<(), Error> {
    write_each(flag, paths, |sink| {
        serde_json::to_writer(&mut *sink, value)?;
        sink.write_all(b"\n")
    })
}

fn write_each(
    flag: &'static str,
    paths: &[String],
    mut write: impl FnMut(&mut Sink) -> io::Result<()>,
) -> Result<(), Error> {
    for path in paths {
        let mut sink = create(flag, path)?;
        write(&mut sink)
            .and_then(|()| sink.flush())
            .map_err(|e| Error::file(flag, FileOp::Write, path, e))?;
    }
    Ok(())
}
