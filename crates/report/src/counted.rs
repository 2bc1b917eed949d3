//! Figures for the counted metrics: syscalls, context switches and user-space
//! instructions per request, one exact value per model.
//!
//! Counts repeat exactly (DESIGN.md: "counted, not timed, metrics do separate
//! them"), so they are compared as exact values ([`Basis::Counted`]), and the
//! lesson they teach together (threads: fewer instructions, more context
//! switches) is printed only when this run's counts show it.

use std::borrow::Cow;

use crate::aggregate::{Better, Range, Unit, Words};
use crate::compare::{self, Basis, Entry, Expect, Quantity};
use crate::figures::{Bar, Figure, Plot};
use crate::lessons;
use crate::page::Ctx;
use crate::schema::Counted;
use crate::sentences::trade;

/// A counted metric: one exact value per model.
pub(crate) struct CountedMetric {
    pub(crate) file: &'static str,
    pub(crate) words: Words,
    pub(crate) get: fn(&Counted) -> Option<f64>,
    /// Each is a cost per request: fewer is better.
    pub(crate) better: Better,
}

/// Every counted metric.
pub(crate) fn counted_metrics() -> [CountedMetric; 3] {
    let words = |header: &'static str, verb, noun: &'static str| Words {
        header: Cow::Borrowed(header),
        axis: Cow::Borrowed(noun),
        verb,
        comparative: "more",
        noun: Cow::Borrowed(noun),
        subject: Cow::Borrowed(noun),
    };
    [
        CountedMetric {
            file: "counted-syscalls",
            words: words("syscalls/req", "made", "syscalls per request"),
            get: Counted::syscalls_per_request,
            better: Better::Lower,
        },
        CountedMetric {
            file: "counted-ctx-switches",
            words: words("ctx switches/req", "made", "context switches per request"),
            get: Counted::ctx_per_request,
            better: Better::Lower,
        },
        CountedMetric {
            file: "counted-instructions",
            words: words(
                "instructions/req",
                "ran",
                "user-space instructions per request",
            ),
            get: |c| c.instructions_per_request,
            better: Better::Lower,
        },
    ]
}

/// Bar charts of syscalls, context switches and instructions per request, for each
/// connection count the counted pass ran at.
pub fn figures(ctx: &Ctx) -> Vec<Figure> {
    let mut conns: Vec<usize> = ctx.results.counted.iter().map(|c| c.conns).collect();
    conns.sort_unstable();
    conns.dedup();
    conns.into_iter().flat_map(|n| figures_at(ctx, n)).collect()
}

fn figures_at(ctx: &Ctx, conns: usize) -> Vec<Figure> {
    let models = &ctx.summary.models;
    let ordered: Vec<&Counted> = models
        .iter()
        .filter_map(|m| {
            ctx.results
                .counted
                .iter()
                .find(|c| &c.model == m && c.conns == conns)
        })
        .collect();
    let context = format!("At {}", crate::format::conns(conns));
    counted_metrics()
        .into_iter()
        .filter_map(|cm| {
            let entries: Vec<Entry> = ordered
                .iter()
                .filter_map(|c| {
                    Some(Entry {
                        model: c.model.as_str(),
                        range: Range::exact((cm.get)(c)?),
                    })
                })
                .collect();
            if entries.is_empty() {
                return None;
            }
            let q = Quantity {
                words: cm.words.clone(),
                unit: Unit::Plain,
                basis: Basis::Counted,
            };
            let mut sentences: Vec<String> = compare::extremes(&q, &context, &entries)
                .into_iter()
                .collect();
            let find = |m: &str| entries.iter().find(|e| e.model == m).copied();
            match cm.file {
                "counted-syscalls" => {
                    if let (Some(loop_), Some(uring)) = (find("nonblocking"), find("uring")) {
                        let e = Expect {
                            higher: "nonblocking",
                            lower: "uring",
                            because: if conns == 1 {
                                lessons::URING_NO_READINESS
                            } else {
                                lessons::URING_BATCHES
                            },
                        };
                        sentences.push(compare::pair(&q, &context, uring, loop_, Some(&e)));
                    }
                }
                "counted-instructions" => sentences.extend(trade(&ordered, conns)),
                _ => {}
            }
            Some(Figure {
                file: format!("{}-{conns}.svg", cm.file),
                title: format!(
                    "counted: {} at {}",
                    cm.words.noun,
                    crate::format::conns(conns)
                ),
                x_label: "model".to_string(),
                y_label: cm.words.axis.to_string(),
                plot: Plot::Bars {
                    bars: entries
                        .iter()
                        .map(|e| Bar {
                            model: e.model.to_string(),
                            range: e.range,
                            mark: Default::default(),
                        })
                        .collect(),
                    log_y: false,
                },
                sentences,
            })
        })
        .collect()
}
