//! HdrHistogram interval logs (the compressed V2 format the HdrHistogram libraries read and
//! write): one histogram per interval, values in nanoseconds.

use crate::error::{Error, FileOp};
use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use std::io::Write;
use std::time::{Duration, SystemTime};

const FLAG: &str = "--export-hlog";
/// Interval maxima are written in ms.
const MAX_DIVISOR: f64 = 1e6;

/// One interval read from a log.
pub struct LoggedInterval {
    /// Since the log's start (or base) time.
    pub start: Duration,
    pub length: Duration,
    pub histogram: Histogram<u64>,
}

/// Reads every interval histogram of a log. `flag` and `path` name the argument in errors.
pub fn read(flag: &'static str, path: &str, bytes: &[u8]) -> Result<Vec<LoggedInterval>, Error> {
    let bad = |what: String| Error::config(flag, format!("{path}: {what}"));
    let mut deserializer = Deserializer::new();
    let mut intervals = Vec::new();
    for (n, entry) in IntervalLogIterator::new(bytes).enumerate() {
        let entry = entry.map_err(|e| bad(format!("not an interval log ({e:?}, entry {n})")))?;
        let LogEntry::Interval(interval) = entry else {
            continue;
        };
        let encoded = base64::engine::general_purpose::STANDARD
            .decode(interval.encoded_histogram())
            .map_err(|e| bad(format!("interval {}: bad base64 ({e})", intervals.len())))?;
        let histogram: Histogram<u64> =
            deserializer
                .deserialize(&mut encoded.as_slice())
                .map_err(|e| {
                    bad(format!(
                        "interval {}: bad histogram ({e:?})",
                        intervals.len()
                    ))
                })?;
        intervals.push(LoggedInterval {
            start: interval.start_timestamp(),
            length: interval.duration(),
            histogram,
        });
    }
    if intervals.is_empty() {
        return Err(bad("no interval histograms in it".into()));
    }
    Ok(intervals)
}

/// Writes the same interval log to every sink.
pub struct Writer {
    sinks: Vec<(String, super::Sink)>,
    serializer: V2DeflateSerializer,
    buf: Vec<u8>,
}

impl Writer {
    /// Opens every path and writes the log's header; interval start times will be seconds since
    /// `start`.
    pub fn create(paths: &[String], start: SystemTime) -> Result<Self, Error> {
        let mut writer = Self {
            sinks: Vec::new(),
            serializer: V2DeflateSerializer::new(),
            buf: Vec::new(),
        };
        IntervalLogWriterBuilder::new()
            .add_comment("sonde round-trip times, values in nanoseconds")
            .with_start_time(start)
            .with_base_time(start)
            .with_max_value_divisor(MAX_DIVISOR)
            .begin_log_with(&mut writer.buf, &mut writer.serializer)
            .map_err(|e| Error::file(FLAG, FileOp::Write, "interval log", e))?;
        writer.buf.extend_from_slice(
            b"\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        );
        for path in paths {
            let sink = super::create(FLAG, path)?;
            writer.sinks.push((path.clone(), sink));
        }
        writer.emit()?;
        Ok(writer)
    }

    /// Writes one interval: its tag (a target of several), start (since the log's start time),
    /// length, maximum (in ms, as the header's MaxValueDivisor says) and compressed histogram.
    pub fn write(
        &mut self,
        tag: Option<&str>,
        histogram: &Histogram<u64>,
        start: Duration,
        length: Duration,
    ) -> Result<(), Error> {
        let mut encoded = Vec::new();
        self.serializer
            .serialize(histogram, &mut encoded)
            .map_err(|e| {
                Error::file(
                    FLAG,
                    FileOp::Write,
                    "interval log",
                    std::io::Error::other(format!("{e:?}")),
                )
            })?;
        if let Some(tag) = tag {
            self.buf.extend_from_slice(format!("Tag={tag},").as_bytes());
        }
        let line = format!(
            "{:.3},{:.3},{:.3},{}\n",
            start.as_secs_f64(),
            length.as_secs_f64(),
            histogram.max() as f64 / MAX_DIVISOR,
            base64::engine::general_purpose::STANDARD.encode(&encoded)
        );
        self.buf.extend_from_slice(line.as_bytes());
        self.emit()
    }

    fn emit(&mut self) -> Result<(), Error> {
        for (path, sink) in &mut self.sinks {
            sink.write_all(&self.buf)
                .and_then(|()| sink.flush())
                .map_err(|e| Error::file(FLAG, FileOp::Write, path, e))?;
        }
        self.buf.clear();
        Ok(())
    }
}
