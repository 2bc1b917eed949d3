//! HdrHistogram interval logs: writing them, reading them back, and merging logs from
//! several load-generator hosts.
//!
//! # Why interval logs
//!
//! Percentiles cannot be averaged: the p99 of two hosts is not the mean of their
//! p99s. Histograms *can* be added exactly. So each host writes its histograms in the
//! standard interval-log format (the one Java's `HistogramLogWriter` and
//! `HistogramLogProcessor` use: one base64, deflate-compressed V2 histogram per line)
//! and `socklab load merge a.hlog b.hlog` adds them up and prints percentiles of
//! the whole.
//!
//! ```text
//! #[socklab-load interval log; values in microseconds]
//! #[StartTime: 1700000000.123 (seconds since epoch)]
//! #[BaseTime: 1700000000.123 (seconds since epoch)]
//! #[MaxValueDivisor: 1000.000]
//! 0.000,1.000,0.412,HISTFAAAAC...          <- request latency, first second
//! 1.000,1.000,0.398,HISTFAAAAC...
//! Tag=connect,0.000,2.000,0.170,HISTF...   <- churn: connect time, whole run
//! ```
//!
//! Values are microseconds; the per-line max column is divided by 1,000 so it reads
//! in milliseconds (`MaxValueDivisor`). Java tools reading these logs should be told
//! the unit (`-outputValueUnitRatio 1000` gives milliseconds).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use hdrhistogram::serialization::interval_log::{
    IntervalLogIterator, IntervalLogWriterBuilder, LogEntry, Tag,
};
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{add_hist, new_histogram, LatencySummary};

/// Tag given to untagged lines (request latency) when merging.
pub const LATENCY_TAG: &str = "latency";
/// Tag of the churn connect-time histogram.
pub const CONNECT_TAG: &str = "connect";
/// Tag of the churn connect-start-to-reply histogram.
pub const CONNECT_TO_REPLY_TAG: &str = "connect_to_reply";

/// Divides the per-line max so it reads in milliseconds (values are µs).
const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// A latency histogram (µs) that serializes as the standard base64 string of a
/// compressed V2 histogram — the same encoding as one interval-log line — so the
/// JSON report carries histograms any HdrHistogram implementation can read.
#[derive(Debug, Clone, PartialEq)]
pub struct Hist(pub Histogram<u64>);

impl Hist {
    /// Percentiles of this histogram.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary::of(&self.0)
    }
}

impl Serialize for Hist {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let enc = encode(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&enc)
    }
}

impl<'de> Deserialize<'de> for Hist {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hist, D::Error> {
        let s = String::deserialize(d)?;
        decode(&s).map(Hist).map_err(serde::de::Error::custom)
    }
}

/// Base64 of the compressed V2 encoding of `h`.
pub fn encode(h: &Histogram<u64>) -> Result<String, HlogError> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| HlogError::Encode(format!("{e}")))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

/// Reads a histogram written by [`encode`] (or any HdrHistogram V2 encoder).
pub fn decode(s: &str) -> Result<Histogram<u64>, HlogError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| HlogError::Decode(format!("bad base64: {e}")))?;
    let mut h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(|e| HlogError::Decode(format!("{e:?}")))?;
    h.auto(true);
    Ok(h)
}

/// Errors reading or writing interval logs.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    #[error("{path}: {cause}")]
    Io { path: PathBuf, cause: io::Error },
    #[error("{path}: not an HdrHistogram interval log (parse error at byte {offset})")]
    Parse { path: PathBuf, offset: usize },
    #[error("cannot encode histogram: {0}")]
    Encode(String),
    #[error("cannot decode histogram: {0}")]
    Decode(String),
    #[error("{path}: {message}")]
    Histogram { path: PathBuf, message: String },
    #[error("{0}: contains no histograms")]
    Empty(PathBuf),
}

/// One interval of a log: `start` is the offset from the log's start time.
#[derive(Debug, Clone)]
pub struct LogInterval<'a> {
    pub start: Duration,
    pub length: Duration,
    pub tag: Option<&'a str>,
    pub hist: &'a Histogram<u64>,
}

/// Writes an interval log: header comments, `StartTime`/`BaseTime` = `start_time`,
/// then one line per interval.
pub fn write_log<W: Write>(
    w: &mut W,
    start_time: SystemTime,
    comments: &[String],
    intervals: &[LogInterval<'_>],
) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    let mut builder = IntervalLogWriterBuilder::new();
    builder.add_comment("[socklab-load interval log; values in microseconds]");
    for c in comments {
        builder.add_comment(c);
    }
    builder
        .with_start_time(start_time)
        .with_base_time(start_time)
        .with_max_value_divisor(MAX_VALUE_DIVISOR);
    let mut log = builder.begin_log_with(w, &mut serializer)?;
    for iv in intervals {
        let tag = iv.tag.and_then(Tag::new);
        log.write_histogram(iv.hist, iv.start, iv.length, tag)
            .map_err(|e| io::Error::other(format!("writing interval log: {e}")))?;
    }
    Ok(())
}

/// What one input file contributed to a merge.
#[derive(Debug, Clone, Serialize)]
pub struct FileSummary {
    pub path: PathBuf,
    pub intervals: usize,
    /// Request-latency values (untagged lines) in this file.
    pub latency_count: u64,
    /// Time covered: first interval start to last interval end, Unix seconds (when
    /// the log has a BaseTime or StartTime; else as written).
    pub span_unix_s: (f64, f64),
}

/// Histograms of several logs added up, by tag (untagged lines are
/// [`LATENCY_TAG`]).
#[derive(Debug, Clone)]
pub struct Merged {
    pub files: Vec<FileSummary>,
    pub by_tag: BTreeMap<String, Histogram<u64>>,
}

/// Reads interval logs and adds up their histograms, per tag.
pub fn merge_files<P: AsRef<Path>>(paths: &[P]) -> Result<Merged, HlogError> {
    let mut merged = Merged {
        files: Vec::new(),
        by_tag: BTreeMap::new(),
    };
    for p in paths {
        let path = p.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|cause| HlogError::Io {
            path: path.clone(),
            cause,
        })?;
        let file = merge_one(&path, &bytes, &mut merged.by_tag)?;
        merged.files.push(file);
    }
    Ok(merged)
}

fn merge_one(
    path: &Path,
    bytes: &[u8],
    by_tag: &mut BTreeMap<String, Histogram<u64>>,
) -> Result<FileSummary, HlogError> {
    let mut base = 0.0_f64;
    let mut summary = FileSummary {
        path: path.to_path_buf(),
        intervals: 0,
        latency_count: 0,
        span_unix_s: (f64::INFINITY, f64::NEG_INFINITY),
    };
    for entry in IntervalLogIterator::new(bytes) {
        let entry = entry.map_err(|e| match e {
            hdrhistogram::serialization::interval_log::LogIteratorError::ParseError { offset } => {
                HlogError::Parse {
                    path: path.to_path_buf(),
                    offset,
                }
            }
        })?;
        match entry {
            // A BaseTime makes timestamps deltas; a StartTime alone is a hint we
            // treat the same way, as socklab writes both with the same value.
            LogEntry::BaseTime(t) | LogEntry::StartTime(t) => base = t.as_secs_f64(),
            LogEntry::Interval(iv) => {
                let h = decode(iv.encoded_histogram()).map_err(|e| HlogError::Histogram {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?;
                let tag = iv.tag().map_or(LATENCY_TAG, |t| t.as_str()).to_string();
                if tag == LATENCY_TAG {
                    summary.latency_count += h.len();
                }
                add_hist(by_tag.entry(tag).or_insert_with(new_histogram), &h);
                summary.intervals += 1;
                let start = base + iv.start_timestamp().as_secs_f64();
                let end = start + iv.duration().as_secs_f64();
                summary.span_unix_s.0 = summary.span_unix_s.0.min(start);
                summary.span_unix_s.1 = summary.span_unix_s.1.max(end);
            }
        }
    }
    if summary.intervals == 0 {
        return Err(HlogError::Empty(path.to_path_buf()));
    }
    Ok(summary)
}

impl fmt::Display for Merged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "merged {} interval log(s):", self.files.len())?;
        for file in &self.files {
            writeln!(
                f,
                "  {}: {} intervals, {} latency values, {:.1} s",
                file.path.display(),
                file.intervals,
                file.latency_count,
                file.span_unix_s.1 - file.span_unix_s.0
            )?;
        }
        writeln!(f)?;
        crate::stats::write_latency_header(f)?;
        for (tag, h) in &self.by_tag {
            crate::stats::write_latency_row(f, tag, &LatencySummary::of(h))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    #[test]
    fn encoding_round_trips() {
        let h = hist(&[1, 10, 100, 1000, 123_456]);
        let back = decode(&encode(&h).unwrap()).unwrap();
        assert_eq!(back.len(), 5);
        assert_eq!(back.max(), h.max());
        let json = serde_json::to_string(&Hist(h.clone())).unwrap();
        let again: Hist = serde_json::from_str(&json).unwrap();
        assert_eq!(again.0.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }

    #[test]
    fn logs_merge_exactly() {
        let a = hist(&[100; 9]);
        let b = hist(&[10_000]);
        let c = hist(&[50]);
        let mut log1 = Vec::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let one = Duration::from_secs(1);
        write_log(
            &mut log1,
            t0,
            &["host a".into()],
            &[
                LogInterval {
                    start: Duration::ZERO,
                    length: one,
                    tag: None,
                    hist: &a,
                },
                LogInterval {
                    start: Duration::ZERO,
                    length: one,
                    tag: Some(CONNECT_TAG),
                    hist: &c,
                },
            ],
        )
        .unwrap();
        let mut log2 = Vec::new();
        write_log(
            &mut log2,
            t0,
            &[],
            &[LogInterval {
                start: one,
                length: one,
                tag: None,
                hist: &b,
            }],
        )
        .unwrap();
        let mut by_tag = BTreeMap::new();
        let f1 = merge_one(Path::new("a"), &log1, &mut by_tag).unwrap();
        let f2 = merge_one(Path::new("b"), &log2, &mut by_tag).unwrap();
        assert_eq!(f1.intervals, 2);
        assert_eq!(f2.latency_count, 1);
        assert!((f2.span_unix_s.0 - 1_700_000_001.0).abs() < 0.01);
        let lat = &by_tag[LATENCY_TAG];
        assert_eq!(lat.len(), 10);
        assert_eq!(lat.value_at_quantile(0.5), 100);
        assert!(lat.max() >= 9_990);
        assert_eq!(by_tag[CONNECT_TAG].len(), 1);
        assert!(merge_one(Path::new("c"), b"garbage\n", &mut by_tag).is_err());
    }
}
