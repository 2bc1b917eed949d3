//! Every sentence the report computes from the data, in one place: the ones under
//! the charts (extremes, the design's predicted pairs, who was not ranked and why,
//! fairness, speedup, the curve's knee and cost), the checks on the numbers, and
//! the first screen's lessons.
//!
//! The rules they follow: a ranking only where min–max ranges are apart
//! ([`crate::compare`]); no model that left clients unserved is ranked, named best
//! or compared, except to say that it did and how many ([`rankable`]); a reason
//! ("because …") only when the measured direction is the one the design predicts
//! ([`crate::lessons`]).

use crate::aggregate::{Metric, Unit};
use crate::compare::{self, Expect};
use crate::figures::Target;
use crate::format;
use crate::lessons;

/// Most comparisons between named pairs printed under one chart: with the
/// extremes sentence that makes the "2–3 sentences" a reader will actually read.
const MAX_PAIRS: usize = 2;
use crate::curve::{knees, KneeRow, P99_BOUND_US, SUSTAINED_SHARE};
use crate::page::{context, entries_at, Ctx};
use crate::schema::{Cell, Counted};

pub fn extremes_at(
    ctx: &Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Option<String> {
    let mut entries = entries_at(ctx, scenario, work, target, conns);
    entries.retain(|e| rankable(ctx, e.model, scenario, work, conns));
    compare::extremes(&target.quantity(), &context(conns), &entries)
}

/// Whether `model` may be named best or worst, or compared, at `conns`: only if it
/// answered every client in every repeat, and no client saw an error. A model that
/// left clients unserved is fast for the few it served: ranking it would reward
/// starving the rest (4 workers serving 4 of 10,000 connections fast "serve more
/// requests per second" than a loop serving all of them); the caveat names it
/// instead. In chaos, lost clients are the point, and everyone is ranked.
pub fn rankable(ctx: &Ctx, model: &str, scenario: &str, work: &str, conns: usize) -> bool {
    let Some(g) = ctx.group(model, scenario, work, conns) else {
        return true;
    };
    scenario == "chaos" || (!g.starved() && g.get(Metric::Errors).is_none_or(|e| e.median == 0.0))
}

/// The design's predicted pairs that both ran, compared by the overlap rule, when
/// both may be compared (see [`rankable`]).
pub fn pairs_at(
    ctx: &Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Vec<String> {
    let entries = entries_at(ctx, scenario, work, target, conns);
    let find = |m: &str| {
        entries
            .iter()
            .find(|e| e.model == m && rankable(ctx, m, scenario, work, conns))
            .copied()
    };
    let expected: Vec<Expect> = lessons::expectations(scenario, target.key(), ctx.multicore());
    expected
        .iter()
        .filter_map(|e| Some((find(e.lower)?, find(e.higher)?, e)))
        .take(MAX_PAIRS)
        .map(|(lower, higher, e)| {
            compare::pair(&target.quantity(), &context(conns), lower, higher, Some(e))
        })
        .collect()
}

/// Models that ran at `conns` but yielded no value (every repeat failed).
pub fn missing_at(
    ctx: &Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Option<String> {
    let missing: Vec<&str> = ctx
        .groups(scenario, work)
        .filter(|g| g.conns == conns && target.get(g).is_none() && g.failed > 0)
        .map(|g| g.model.as_str())
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "No data for {} at {}: every repeat failed (see Failed cells).",
            compare::list(&missing),
            format::conns(conns)
        )
    })
}

/// Models that left clients unserved, or whose clients saw errors, at `conns`:
/// said so with how many, as the reason they are not ranked. Not said in chaos,
/// where lost clients are the point.
pub fn unanswered_at(ctx: &Ctx, scenario: &str, work: &str, conns: usize) -> Option<String> {
    if scenario == "chaos" {
        return None;
    }
    let counted = |metric: Metric| -> Vec<(&str, f64)> {
        ctx.summary
            .models
            .iter()
            .filter_map(|m| {
                let n = ctx.group(m, scenario, work, conns)?.get(metric)?.median;
                (n > 0.0).then_some((m.as_str(), n))
            })
            .collect()
    };
    let mut parts = Vec::new();
    let unserved = counted(Metric::Unserved);
    if !unserved.is_empty() {
        parts.push(format!(
            "{} left clients unserved ({} of {} got no reply in the window, median of the \
             repeats): {} latency is the wait of clients never answered, a lower bound, and {} \
             not ranked",
            compare::list(&names(&unserved)),
            counts(&unserved),
            format::num(conns as f64),
            if unserved.len() == 1 { "its" } else { "their" },
            if unserved.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        ));
    }
    let errors = counted(Metric::Errors);
    if !errors.is_empty() {
        parts.push(format!(
            "{} had clients that saw errors ({} of {}), so {} not ranked either",
            compare::list(&names(&errors)),
            counts(&errors),
            format::num(conns as f64),
            if errors.len() == 1 {
                "it is"
            } else {
                "they are"
            },
        ));
    }
    (!parts.is_empty()).then(|| format!("At {}, {}.", format::conns(conns), parts.join("; ")))
}

pub fn names<'a>(counted: &[(&'a str, f64)]) -> Vec<&'a str> {
    counted.iter().map(|(m, _)| *m).collect()
}

/// `999`, or `996 and 999` (each model's median, in the order of the names).
pub fn counts(counted: &[(&str, f64)]) -> String {
    let all: Vec<String> = counted.iter().map(|(_, n)| format::num(*n)).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    compare::list(&refs)
}

/// "The tail grows most for X (p99.99 is N× its p50) and least for Y (M×)."
pub fn tail_growth(ctx: &Ctx, scenario: &str, work: &str, conns: usize) -> Option<String> {
    let growth: Vec<(&str, f64)> = ctx
        .summary
        .models
        .iter()
        .filter(|m| rankable(ctx, m, scenario, work, conns))
        .filter_map(|m| {
            let g = ctx.group(m, scenario, work, conns)?;
            let (p50, tail) = (g.get(Metric::P50)?.median, g.get(Metric::P9999)?.median);
            (p50 > 0.0).then_some((m.as_str(), tail / p50))
        })
        .collect();
    if growth.len() < 2 {
        return None;
    }
    let most = growth.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let least = growth.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(format!(
        "Comparing medians, the tail grows most for {} (p99.99 is {:.1}× its p50) and least \
         for {} ({:.1}×): a long tail means some requests waited behind others, for a \
         scheduler turn, a busy loop or a free worker.",
        most.0, most.1, least.0, least.1
    ))
}

pub fn single_core_note(ctx: &Ctx) -> String {
    let how = match ctx.results.run.server_cpu {
        Some(cpu) => format!("the server was pinned to CPU {cpu}"),
        None => "the machine has one CPU".to_string(),
    };
    format!(
        "In this run {how}, so no model could spread CPU-bound work over several cores: \
         differences here come from scheduling, not parallelism."
    )
}

/// "Sustained …: nonblocking up to 20,972 req/s offered, …; iterative not even at
/// 2,000."
pub fn knee_sentence(rows: &[&KneeRow]) -> String {
    use crate::aggregate::Unit;
    use crate::curve::NoKnee;
    use crate::format;
    let mut held = Vec::new();
    let mut none: Vec<(NoKnee, &str)> = Vec::new();
    let mut bounded = Vec::new();
    for r in rows {
        match &r.offered {
            Some(o) => {
                let rate = format::range_with_unit(o, Unit::Rate);
                if r.lower_bound {
                    bounded.push(format!("{} ≥ {rate}", r.model));
                } else {
                    held.push(format!("{} up to {rate}", r.model));
                }
            }
            None => none.push((r.no_knee.unwrap_or(NoKnee::Short), r.model.as_str())),
        }
    }
    let list =
        |v: &[String]| crate::compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !held.is_empty() {
        parts.push(list(&held));
    }
    if !bounded.is_empty() {
        parts.push(format!(
            "{} (a lower bound: the load generator fell behind or ran out of CPU first, \
             so the step past it measured the client, not the server)",
            list(&bounded)
        ));
    }
    let mut s = format!(
        "Offered rates sustained (every client answered, at least {:.0} % of the rate \
         achieved, p99 within {}, the load generator on schedule): {}.",
        SUSTAINED_SHARE * 100.0,
        format::with_unit(P99_BOUND_US, Unit::Micros),
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("; ")
        }
    );
    let first = format::with_unit(crate::curve::FIRST_STEP_RPS, Unit::Rate);
    for why in [
        NoKnee::Unserved,
        NoKnee::Slow,
        NoKnee::Short,
        NoKnee::LoadGenerator,
    ] {
        let models: Vec<&str> = none
            .iter()
            .filter(|(w, _)| *w == why)
            .map(|(_, m)| *m)
            .collect();
        if models.is_empty() {
            continue;
        }
        let who = crate::compare::list(&models);
        s += &match why {
            NoKnee::Unserved if models.iter().all(|m| waits_for_a_worker(m)) => format!(
                " {who} left clients unanswered even at the first step, {first}: with more \
                 clients than workers (or one turn), the others wait however low the rate."
            ),
            NoKnee::Unserved => {
                format!(" {who} left clients unanswered even at the first step, {first}.")
            }
            NoKnee::Slow => format!(
                " {who} had p99 above {} even at the first step, {first}.",
                format::with_unit(P99_BOUND_US, Unit::Micros)
            ),
            NoKnee::Short => format!(
                " {who} achieved less than {:.0} % of even the first step's {first}.",
                SUSTAINED_SHARE * 100.0
            ),
            NoKnee::LoadGenerator => format!(
                " For {who} the load generator could not keep even the first step's \
                 schedule ({first}): that curve measured the client, not the server."
            ),
        };
    }
    s
}

/// A model whose clients queue for a fixed set of workers, or for one turn.
fn waits_for_a_worker(model: &str) -> bool {
    use socklab_models::Shape;
    socklab_models::find(model).is_some_and(|m| m.shape.pooled() || m.shape == Shape::Serial)
}

/// Whether server CPU per request falls as the load rises (several ready sockets
/// per `epoll_wait`), stays, or rises, per model: from the lowest step to the knee.
/// Change in CPU per request between the lowest step and the knee that counts as
/// a change (timed figures on this machine move by ±20–30 %).
const COST_CHANGE: f64 = 0.25;

pub fn cost_sentence(ctx: &Ctx, conns: usize, cpus: usize) -> Vec<String> {
    use crate::aggregate::{Metric, Unit};
    use crate::format;
    let mut fell = Vec::new();
    let mut flat = Vec::new();
    let mut rose = Vec::new();
    // Of the models whose cost fell: those that switched far less often per
    // request at the knee (several sockets per wake-up), and those still woken for
    // about every request, whose fall batching cannot explain.
    let mut batched = Vec::new();
    let mut woken_each = Vec::new();
    for row in knees(ctx.results, &ctx.summary.models)
        .iter()
        .filter(|k| k.conns == conns && k.server_cpus == cpus)
    {
        let Some(knee) = row.offered.map(|r| r.median) else {
            continue;
        };
        let steps: Vec<&crate::aggregate::Group> = ctx
            .summary
            .steps
            .iter()
            .filter(|g| g.model == row.model && g.conns == conns && g.server_cpus == cpus)
            .collect();
        let cpu = |g: &&crate::aggregate::Group| g.get(Metric::CpuPerRequest).map(|r| r.median);
        let switches =
            |g: &&crate::aggregate::Group| g.get(Metric::CtxPerRequest).map(|r| r.median);
        let at_knee = steps
            .iter()
            .rfind(|g| g.offered_rps.is_some_and(|o| o <= knee));
        let (Some(first), Some(last)) = (steps.first().and_then(cpu), at_knee.and_then(cpu)) else {
            continue;
        };
        if steps.len() < 3 || first <= 0.0 {
            continue;
        }
        let change = last / first - 1.0;
        let text = format!(
            "{} ({} → {})",
            row.model,
            format::with_unit(first, Unit::Micros),
            format::with_unit(last, Unit::Micros)
        );
        if change < -COST_CHANGE {
            fell.push(text);
            match (steps.first().and_then(switches), at_knee.and_then(switches)) {
                (_, Some(high)) if high >= WOKEN_EACH => woken_each.push(format!(
                    "{} ({} context switches per request at the knee)",
                    row.model,
                    format::sig3(high)
                )),
                (Some(low), Some(high)) if high < low * (1.0 - COST_CHANGE) => {
                    batched.push(format!(
                        "{} ({} → {} switches per request)",
                        row.model,
                        format::sig3(low),
                        format::sig3(high)
                    ))
                }
                _ => {}
            }
        } else if change > COST_CHANGE {
            rose.push(text);
        } else {
            flat.push(text);
        }
    }
    let list =
        |v: &[String]| crate::compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !fell.is_empty() {
        parts.push(format!(
            "fell by more than {:.0} % for {}",
            COST_CHANGE * 100.0,
            list(&fell)
        ));
    }
    if !flat.is_empty() {
        parts.push(format!(
            "stayed within ±{:.0} % for {}",
            COST_CHANGE * 100.0,
            list(&flat)
        ));
    }
    if !rose.is_empty() {
        parts.push(format!("rose for {}", list(&rose)));
    }
    if parts.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "From the lowest step to the knee, server CPU per request {}.",
        parts.join("; ")
    )];
    if !batched.is_empty() {
        out.push(format!(
            "Context switches per request fell with it for {}: as the rate rises an event \
             loop finds several sockets ready per wake-up (`epoll_wait`, `io_uring_enter`) and \
             pays for the wake-up once among them.",
            list(&batched)
        ));
    }
    if !woken_each.is_empty() {
        out.push(format!(
            "Batched wake-ups do not explain the fall for {}: {} still woken about once per \
             request.",
            list(&woken_each),
            if woken_each.len() == 1 {
                "it was"
            } else {
                "they were"
            }
        ));
    }
    out
}

/// A model that made at least this many context switches per request at the knee
/// is still woken for about every request (a blocked thread: 1.00 in the counted
/// pass).
const WOKEN_EACH: f64 = 0.5;

/// The thread vs event loop trade: fewer instructions, more context switches.
/// Stated as a lesson only when this run's counts show it.
pub fn trade(counted: &[&Counted], conns: usize) -> Option<String> {
    let both = |m: &str| {
        let c = counted.iter().find(|c| c.model == m)?;
        Some((c.instructions_per_request?, c.ctx_per_request()?))
    };
    let (ti, tc) = both("thread")?;
    let (lp, (li, lc)) = ["nonblocking", "async"]
        .iter()
        .find_map(|m| Some((*m, both(m)?)))?;
    let facts = format!(
        "At {}, thread ran {} user-space instructions per request to {lp}'s {}, and made {} \
         context switches per request to {lp}'s {}",
        format::conns(conns),
        format::num(ti),
        format::num(li),
        format::num(tc),
        format::num(lc)
    );
    Some(if ti < li && tc > 2.0 * lc {
        format!(
            "{facts}: the kernel does the thread model's scheduling (a context switch per \
             request), the event loop does its own in user space (instructions). Neither \
             number alone is the cost."
        )
    } else if conns == 1 {
        format!(
            "{facts}: with one connection every model, event loops included, sleeps and is \
             woken once per request, so the trade shows at more connections."
        )
    } else {
        format!(
            "{facts}. This run does not show the usual trade (threads: fewer instructions, \
             more context switches), so no explanation is offered."
        )
    })
}

/// How close the one-connection p50s came to the floor.
pub fn at_floor(ctx: &Ctx, floor_us: f64) -> Option<String> {
    let scenario = "scaling";
    let conns = *ctx.summary.conns_in(scenario).first()?;
    let p50: Vec<(&str, f64)> = ctx
        .summary
        .in_scenario(scenario)
        .filter(|g| g.conns == conns)
        .filter_map(|g| Some((g.model.as_str(), g.get(Metric::P50)?.median)))
        .collect();
    let lo = p50.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let hi = p50.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
    if floor_us <= 0.0 {
        return None;
    }
    if format::num(lo.1) == format::num(hi.1) {
        return Some(format!(
            "With {} in the scaling scenario, every model's median p50 was {}: {:.1}× the floor.",
            format::conns(conns),
            format::with_unit(lo.1, Unit::Micros),
            lo.1 / floor_us
        ));
    }
    Some(format!(
        "With {} in the scaling scenario, the models' median p50 ranged from {} ({}) to {} ({}): \
         {:.1}–{:.1}× the floor.",
        format::conns(conns),
        format::with_unit(lo.1, Unit::Micros),
        lo.0,
        format::with_unit(hi.1, Unit::Micros),
        hi.0,
        lo.1 / floor_us,
        hi.1 / floor_us
    ))
}

/// A model "used" another CPU when it served at least this much more on several.
const USES_ANOTHER_CPU: f64 = 1.3;

/// A speedup this far past the CPU ratio is not noise in the model's favour but a
/// slowed one-CPU cell.
const SPEEDUP_SLACK: f64 = 0.05;

/// "With the server on 2 CPUs instead of one (requests per second, 2 CPUs ÷ 1):
/// thread (1.9×) used the other CPUs; nonblocking (1.0×) did not."
pub fn speedup(bars: &[crate::figures::Bar], cpus: usize) -> Vec<String> {
    let (mut used, mut partly, mut not) = (Vec::new(), Vec::new(), Vec::new());
    for b in bars {
        let text = format!("{} ({})", b.model, format::ratio_x(b.range.median));
        if b.range.min >= USES_ANOTHER_CPU {
            used.push(text);
        } else if b.range.max < USES_ANOTHER_CPU {
            not.push(text);
        } else {
            partly.push(text);
        }
    }
    let list = |v: &[String]| compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !used.is_empty() {
        parts.push(format!("{} used the other CPUs", list(&used)));
    }
    if !not.is_empty() {
        parts.push(format!("{} did not", list(&not)));
    }
    if !partly.is_empty() {
        parts.push(format!(
            "for {} the repeats are too far apart to tell",
            list(&partly)
        ));
    }
    let mut sentences = vec![format!(
        "With the server on {cpus} CPUs instead of one (requests per second, {cpus} CPUs ÷ 1): {}.",
        parts.join("; ")
    )];
    if !used.is_empty() && !not.is_empty() {
        sentences.push(format!("The difference is {}.", lessons::CORES));
    }
    // More than the extra CPUs can give: the one-CPU cells were slowed by
    // something else, and the ratio measures that, not the model.
    let impossible: Vec<String> = bars
        .iter()
        .filter(|b| b.range.median > cpus as f64 * (1.0 + SPEEDUP_SLACK))
        .map(|b| format!("{} ({})", b.model, format::ratio_x(b.range.median)))
        .collect();
    if !impossible.is_empty() {
        sentences.push(format!(
            "{} gained more than {cpus} CPUs can give: the one-CPU cells were slowed by \
             something else (other load on the machine), so repeat the run before reading \
             these ratios.",
            list(&impossible)
        ));
    }
    sentences
}

/// Above this fairness index every client got about the same share.
const EVEN_SHARE: f64 = 0.9;

/// Who shared the requests evenly among every client, who served every client
/// unevenly, and who served only some.
pub fn fairness(ctx: &Ctx, scenario: &str, work: &str, conns: usize) -> String {
    let target = Target::Metric(Metric::Fairness);
    let entries = entries_at(ctx, scenario, work, &target, conns);
    let group = |m: &str| ctx.group(m, scenario, work, conns);
    let (mut even, mut uneven, mut starving) = (Vec::new(), Vec::new(), Vec::new());
    for e in &entries {
        let Some(g) = group(e.model) else { continue };
        let index = format::num(e.range.median);
        if g.starved() {
            let served = g.get(Metric::Served).map_or(0.0, |r| r.median);
            starving.push(format!(
                "{} ({} of {})",
                e.model,
                format::num(served),
                format::num(conns as f64)
            ));
        } else if e.range.median >= EVEN_SHARE {
            even.push(format!("{} ({index})", e.model));
        } else {
            uneven.push(format!("{} ({index})", e.model));
        }
    }
    let list = |v: &[String]| compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let mut parts = Vec::new();
    if !even.is_empty() {
        parts.push(format!(
            "{} shared the requests evenly among every client",
            list(&even)
        ));
    }
    if !uneven.is_empty() {
        parts.push(format!(
            "{} served every client but unevenly: some were answered far more often than \
             others, which the latency over all clients shows as a longer tail",
            list(&uneven)
        ));
    }
    if !starving.is_empty() {
        parts.push(format!(
            "{} served only some clients, and the rest got nothing",
            list(&starving)
        ));
    }
    format!(
        "At {}, Jain's fairness index of requests per client (1 = even): {}.",
        format::conns(conns),
        parts.join("; ")
    )
}

/// Little's law in a closed loop: measured mean ÷ predicted mean within this band.
pub const LITTLE_BAND: (f64, f64) = (0.8, 1.25);
/// Server CPU over the window may exceed the CPUs it was given by this much
/// (two readings a few hundred µs from the window's edges).
pub const CPU_SLACK: f64 = 1.05;

/// Two checks every run must pass before its numbers are believed, as paragraphs:
/// in a closed loop the mean latency is what Little's law predicts, and no server
/// used more CPU than it was given.
pub fn checks(ctx: &Ctx) -> Vec<String> {
    let mut out = Vec::new();
    let cells: Vec<&Cell> = ctx.results.cells.iter().filter(|c| c.is_ok()).collect();
    let name = |c: &Cell| format!("{} {} {} r{}", c.model, c.scenario, c.conns, c.repeat);
    // Little's law, where every client was served and none saw an error.
    let little: Vec<(&Cell, f64)> = cells
        .iter()
        .filter(|c| c.scenario != "chaos")
        .filter_map(|c| {
            let l = c.load.as_ref()?;
            let clean = l.errors.unserved_conns == 0 && l.errors.clients == 0;
            Some((*c, l.little.filter(|_| clean)?.ratio()))
        })
        .collect();
    if !little.is_empty() {
        let off: Vec<String> = little
            .iter()
            .filter(|(_, r)| !(LITTLE_BAND.0..=LITTLE_BAND.1).contains(r))
            .map(|(c, r)| {
                let unsteady = c
                    .load
                    .as_ref()
                    .and_then(|l| l.ramp)
                    .is_some_and(|ramp| !ramp.complete);
                if unsteady {
                    format!(
                        "{} ({:.2}×; its ramp reached its limit, so clients first answered in \
                         the window brought their wait from before it: not a steady state)",
                        name(c),
                        r
                    )
                } else {
                    format!("{} ({:.2}×)", name(c), r)
                }
            })
            .collect();
        let mut p = format!(
            "**Little's law.** In a closed loop every client has one request in flight, so the \
             mean latency must be about clients ÷ throughput. Over the {} closed-loop cells where \
             every client was served without error, the measured mean was {}–{}× the prediction",
            little.len(),
            format::num(little.iter().map(|x| x.1).fold(f64::INFINITY, f64::min)),
            format::num(little.iter().map(|x| x.1).fold(0.0, f64::max)),
        );
        if off.is_empty() {
            p += &format!(
                "; every one is within {}–{}×.",
                LITTLE_BAND.0, LITTLE_BAND.1
            );
        } else {
            p += &format!(
                "; outside {}–{}×: {}. A gap means the clients spent time not waiting (a busy \
                 load generator, reconnects) or requests were left out.",
                LITTLE_BAND.0,
                LITTLE_BAND.1,
                off.join(", ")
            );
        }
        out.push(p);
    }
    // Server CPU over the window against the CPUs it was given.
    let pinned = ctx.results.run.server_cpu.is_some();
    let given = |c: &Cell| {
        if pinned {
            c.server_cpus as f64
        } else {
            ctx.results.machine.cpus.max(1) as f64
        }
    };
    let used: Vec<(&Cell, f64)> = cells
        .iter()
        .filter_map(|c| Some((*c, c.server_cpus_used()? / given(c))))
        .collect();
    if let Some((top, share)) = used.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)) {
        let over: Vec<String> = used
            .iter()
            .filter(|(_, u)| *u > CPU_SLACK)
            .map(|(c, u)| format!("{} ({:.2} of {})", name(c), u * given(c), given(c)))
            .collect();
        let mut p = format!(
            "**Server CPU.** Measured over exactly the window, no server used more of the CPUs \
             it was given than {} ({}: {:.2} CPUs of {})",
            format::with_unit(share, Unit::Share),
            name(top),
            share * given(top),
            format::num(given(top)),
        );
        if over.is_empty() {
            p.push('.');
        } else {
            p += &format!(
                ". More than {CPU_SLACK}× is impossible and marks a measuring error: {}.",
                over.join(", ")
            );
        }
        out.push(p);
    }
    out
}

/// The first screen's lessons: three to six sentences, each computed from the
/// glance rows and stating its numbers; a lesson whose data is missing, or does not
/// point the way the sentence says, is left out.
pub fn lessons(rows: &[crate::glance::Costs]) -> Vec<String> {
    use crate::glance::Costs;
    let mut out = Vec::new();
    let list = |v: &[String]| compare::list(&v.iter().map(String::as_str).collect::<Vec<_>>());
    // Who served every client at the largest count.
    let served: Vec<(&Costs, f64, usize)> = rows
        .iter()
        .filter_map(|r| r.served.map(|(s, n)| (r, s, n)))
        .collect();
    if let Some(&(_, _, n)) = served.first() {
        let all: Vec<String> = served
            .iter()
            .filter(|(_, s, n)| *s >= *n as f64)
            .map(|(r, _, _)| r.model.clone())
            .collect();
        let some: Vec<String> = served
            .iter()
            .filter(|(_, s, n)| *s < *n as f64)
            .map(|(r, s, _)| format!("{} {}", r.model, format::num(*s)))
            .collect();
        if !some.is_empty() && !all.is_empty() {
            out.push(format!(
                "At {}, {} answered every client; {} served only that many, and the others \
                 waited through the whole window for a worker, a process or a turn.",
                format::conns(n),
                list(&all),
                list(&some)
            ));
        }
    }
    // Memory per held connection: the cheapest and the dearest.
    let mem: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.model.as_str(), r.memory?.median)))
        .filter(|(_, m)| *m > 0.0)
        .collect();
    if let (Some(lo), Some(hi)) = (
        mem.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)),
        mem.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        if hi.1 >= 4.0 * lo.1 {
            let cost = |m: &str| {
                rows.iter()
                    .find(|r| r.model == m)
                    .map_or(String::new(), |r| r.per_client.clone())
            };
            out.push(format!(
                "Holding one more connection cost {} {} of memory ({}) and {} {} ({}): \
                 {}× apart.",
                lo.0,
                format::with_unit(lo.1, Unit::Bytes),
                cost(lo.0),
                hi.0,
                format::with_unit(hi.1, Unit::Bytes),
                cost(hi.0),
                format::num((hi.1 / lo.1).round())
            ));
        }
    }
    // Connection setup: fork against the cheapest.
    let churn: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.model.as_str(), r.churn_cpu?.median)))
        .collect();
    if let (Some(fork), Some(cheap)) = (
        churn.iter().find(|(m, _)| *m == "fork").copied(),
        churn.iter().copied().min_by(|a, b| a.1.total_cmp(&b.1)),
    ) {
        if fork.1 >= 2.0 * cheap.1 && cheap.0 != "fork" {
            out.push(format!(
                "Setting up a connection cost fork {} of server CPU (a `fork()` and a reap per \
                 client) against {} for {}.",
                format::with_unit(fork.1, Unit::Micros),
                format::with_unit(cheap.1, Unit::Micros),
                cheap.0
            ));
        }
    }
    // Sleep work against the ideal.
    let sleep: Vec<(&str, f64, f64)> = rows
        .iter()
        .filter_map(|r| {
            r.sleep
                .map(|(s, ideal)| (r.model.as_str(), s.median, ideal))
        })
        .collect();
    if let Some(&(_, _, ideal)) = sleep.first() {
        let near: Vec<String> = sleep
            .iter()
            .filter(|(_, s, _)| *s >= 0.8)
            .map(|(m, _, _)| m.to_string())
            .collect();
        let far: Vec<String> = sleep
            .iter()
            .filter(|(_, s, _)| *s < 0.2)
            .map(|(m, s, _)| format!("{m} {}", format::with_unit(*s, Unit::Share)))
            .collect();
        if !near.is_empty() && !far.is_empty() {
            out.push(format!(
                "With requests that sleep instead of computing, {} came within 20 % of the \
                 ideal {} (every client asleep at once); {} did not: a worker asleep in one \
                 request cannot take another.",
                list(&near),
                format::with_unit(ideal, Unit::Rate),
                list(&far)
            ));
        }
    }
    // Fault isolation.
    let crash: Vec<(&str, f64, usize, bool)> = rows
        .iter()
        .filter_map(|r| r.crash.map(|(l, n, s)| (r.model.as_str(), l, n, s)))
        .collect();
    let kept: Vec<String> = crash
        .iter()
        .filter(|(_, l, _, s)| *l == 0.0 && *s)
        .map(|(m, ..)| m.to_string())
        .collect();
    let lost_all = |(_, l, n, s): &&(&str, f64, usize, bool)| !*s || *l >= *n as f64;
    let some: Vec<String> = crash
        .iter()
        .filter(|c| c.1 > 0.0 && !lost_all(c))
        .map(|(m, l, n, _)| format!("{m} ({} of {n})", format::num(*l)))
        .collect();
    let lost: Vec<String> = crash
        .iter()
        .filter(|c| c.1 > 0.0 && lost_all(c))
        .map(|(m, ..)| m.to_string())
        .collect();
    if !kept.is_empty() && !lost.is_empty() {
        let mut lesson = format!(
            "When one handler crashed, {} lost no other client: the crash ended one process.",
            list(&kept)
        );
        if !some.is_empty() {
            lesson += &format!(
                " {} lost only the clients of the one process that crashed.",
                list(&some)
            );
        }
        lesson += &format!(
            " {} lost every other client with it: they share one process.",
            list(&lost)
        );
        out.push(lesson);
    }
    // The counted trade, at the most connections counted.
    let thread = rows
        .iter()
        .find(|r| r.model == "thread")
        .and_then(|r| r.counted);
    let looped = rows
        .iter()
        .find(|r| r.model == "nonblocking")
        .and_then(|r| r.counted);
    if let (Some(t), Some(l)) = (thread, looped) {
        let (n, ti, li) = (t.conns, t.instructions, l.instructions);
        let (Some(tc), Some(lc)) = (t.ctx_switches, l.ctx_switches) else {
            return out;
        };
        if tc > 4.0 * lc {
            let instr = match (ti, li) {
                (Some(t), Some(l)) => format!(
                    " and {} against {} user-space instructions",
                    format::num(t.round()),
                    format::num(l.round())
                ),
                _ => String::new(),
            };
            out.push(format!(
                "At {}, thread made {} context switches per request against nonblocking's {}{}: \
                 the kernel schedules threads, an event loop schedules itself.",
                format::conns(n),
                format::num(tc),
                format::num(lc),
                instr
            ));
        }
    }
    out
}

/// What a reader cannot learn from this run, and why: cells the load generator
/// may have limited, curves that hit its limit, the CPUs the server had, tools
/// that were missing.
pub fn limits(ctx: &Ctx) -> Vec<String> {
    use crate::aggregate::LOADGEN_BUSY;
    let mut out = Vec::new();
    let ok: Vec<&Cell> = ctx.results.cells.iter().filter(|c| c.is_ok()).collect();
    let busy = ok
        .iter()
        .filter(|c| {
            c.load
                .as_ref()
                .is_some_and(|l| l.loadgen_cpu_util > LOADGEN_BUSY)
        })
        .count();
    if busy > 0 {
        out.push(format!(
            "In {} of {} cells the load generator used more than {} of its CPUs (marked † in \
             the tables and charts; listed in [appendix A](#appendix-a-the-load-generators-cpu)): \
             their throughput is a lower bound, the client's limit as much as the server's. On \
             loopback the sender pays the receive work for its own segments, so with one CPU \
             each the load generator is as busy as the server.",
            format::num(busy as f64),
            format::num(ok.len() as f64),
            format::with_unit(LOADGEN_BUSY, Unit::Share)
        ));
    }
    // Curves the load generator limited, per connection and server CPU count: a lower bound, or
    // nothing measured at all.
    let rows = knees(ctx.results, &ctx.summary.models);
    // One list per curve: connections and server CPUs.
    let mut spans: Vec<(usize, usize)> = rows.iter().map(|k| (k.conns, k.server_cpus)).collect();
    spans.sort_unstable();
    spans.dedup();
    let per_span = |keep: &dyn Fn(&crate::curve::KneeRow) -> bool| -> Vec<String> {
        spans
            .iter()
            .filter_map(|&(conns, cpus)| {
                let models: Vec<&str> = rows
                    .iter()
                    .filter(|k| k.conns == conns && k.server_cpus == cpus && keep(k))
                    .map(|k| k.model.as_str())
                    .collect();
                (!models.is_empty()).then(|| {
                    format!(
                        "{} ({} connections, server on {})",
                        compare::list(&models),
                        format::num(conns as f64),
                        format::cpus(cpus)
                    )
                })
            })
            .collect()
    };
    let bounded = per_span(&|k| k.lower_bound);
    if !bounded.is_empty() {
        out.push(format!(
            "The latency-vs-load curve of {} reached the load generator's limit before the \
             server's: their knee and capacity per core are lower bounds.",
            bounded.join("; ")
        ));
    }
    let unmeasured = per_span(&|k| k.no_knee == Some(crate::curve::NoKnee::LoadGenerator));
    if !unmeasured.is_empty() {
        out.push(format!(
            "The load generator could not keep even the first step's schedule in the curve \
             of {}: no knee is known there.",
            unmeasured.join("; ")
        ));
    }
    out.extend(steal_limit(&ok));
    let m = &ctx.results.machine;
    let most = ctx
        .results
        .cells
        .iter()
        .map(|c| c.server_cpus)
        .max()
        .unwrap_or(1);
    match ctx.results.run.server_cpu {
        Some(_) => out.push(format!(
            "The server was pinned to one CPU{}; the machine has {}. How the models scale past \
             {} cores is not shown here: `scripts/compare.sh --server-cpus 1,2,4,8` on a \
             bigger machine measures it.",
            if most > 1 {
                format!(" (to {most} in the cpu and curve scenarios)")
            } else {
                String::new()
            },
            m.cpus,
            most
        )),
        None => out.push(format!(
            "Server and load generator shared the machine's {} CPU{} (not pinned).",
            m.cpus,
            if m.cpus == 1 { "" } else { "s" }
        )),
    }
    out.extend(crate::c100k::limits(ctx));
    for t in ctx
        .results
        .run
        .tools
        .iter()
        .filter(|t| t.wanted && t.version.is_none())
    {
        out.push(format!(
            "`{}` was not installed, so {} was not measured (`scripts/compare.sh` installs it \
             when run as root with apt-get).",
            t.name, t.measures
        ));
    }
    let counted = &ctx.results.counted;
    let valgrind_wanted = ctx
        .results
        .run
        .tools
        .iter()
        .any(|t| t.name == "valgrind" && t.wanted);
    if !counted.is_empty()
        && !valgrind_wanted
        && counted.iter().all(|c| c.instructions_per_request.is_none())
    {
        out.push(
            "User-space instructions per request were not counted: callgrind runs only in \
             `--full` or with `--callgrind` (the `—` in the first table's last column)."
                .to_string(),
        );
    }
    out
}

/// The cells whose window the hypervisor took more than [`STEAL_NOTED`] of the
/// machine's CPU time from, and the worst of them.
fn steal_limit(ok: &[&Cell]) -> Option<String> {
    use crate::aggregate::STEAL_NOTED;
    let stolen: Vec<(&Cell, f64)> = ok
        .iter()
        .filter_map(|c| Some((*c, c.server.as_ref()?.steal_share?)))
        .filter(|(_, s)| *s > STEAL_NOTED)
        .collect();
    let (worst, share) = stolen.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    Some(format!(
        "In {} of {} cells the hypervisor gave more than {} of this machine's CPU time to \
         others during the window (steal, from /proc/stat; most: {} in {} {} {} r{}; every \
         cell's share is in [appendix B](#appendix-b-every-repeat)). A virtual CPU woken from \
         idle waits for the host, so there the latency tails, and the load generator's send \
         schedule in the curve, measure the host as much as the model.",
        format::num(stolen.len() as f64),
        format::num(ok.len() as f64),
        format::with_unit(STEAL_NOTED, Unit::Share),
        format::with_unit(*share, Unit::Share),
        worst.model,
        worst.scenario,
        format::num(worst.conns as f64),
        worst.repeat
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::curve::NoKnee;

    fn no_knee(model: &str, why: NoKnee) -> KneeRow {
        KneeRow {
            model: model.into(),
            conns: 100,
            server_cpus: 2,
            with_knee: 0,
            repeats: 1,
            offered: None,
            per_core: None,
            p99_us: None,
            lower_bound: false,
            no_knee: Some(why),
        }
    }

    /// One curve step: offered req/s, server CPU µs per request, context switches
    /// per request.
    type CurveStep = (f64, f64, f64);

    /// A curve of three steps per model, from the fixture's first scaling cell.
    fn curves(models: &[(&str, [CurveStep; 3])]) -> crate::schema::Results {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let mut results = crate::load(&dir).expect("fixture loads");
        let template = results
            .cells
            .iter()
            .find(|c| c.is_ok() && c.scenario == "scaling")
            .expect("a scaling cell")
            .clone();
        results.cells.clear();
        for (model, steps) in models {
            for (offered, cpu_us, switches) in steps {
                let mut c = template.clone();
                c.model = model.to_string();
                c.scenario = "curve".into();
                c.conns = 100;
                c.repeat = 0;
                c.offered_rps = Some(*offered);
                let load = c.load.as_mut().unwrap();
                load.requests = (*offered as u64) * 3;
                load.throughput_rps = *offered;
                load.latency_us.p99 = 200.0;
                load.loadgen_cpu_util = 0.3;
                load.send_lag_p99_us = Some(50.0);
                load.errors = Default::default();
                let server = c.server.as_mut().unwrap();
                server.cpu_user_s = 0.0;
                server.cpu_system_s = cpu_us * load.requests as f64 / 1e6;
                server.voluntary_ctx = (switches * load.requests as f64) as u64;
                server.involuntary_ctx = 0;
                results.cells.push(c);
            }
        }
        results
    }

    /// The sentence under the CPU-per-request curve says an event loop batches
    /// wake-ups only where its switches per request fell, and says of a model still
    /// woken for every request that batching does not explain its fall.
    #[test]
    fn a_cheaper_request_is_explained_by_the_switches_that_fell() {
        let results = curves(&[
            (
                "thread",
                [
                    (2_000.0, 30.0, 1.0),
                    (3_200.0, 20.0, 1.0),
                    (5_120.0, 11.0, 0.98),
                ],
            ),
            (
                "nonblocking",
                [
                    (2_000.0, 25.0, 0.9),
                    (3_200.0, 18.0, 0.4),
                    (5_120.0, 14.0, 0.1),
                ],
            ),
        ]);
        let summary = crate::aggregate::Summary::from_results(&results);
        let ctx = Ctx {
            results: &results,
            summary: &summary,
        };
        let text = cost_sentence(&ctx, 100, 1).join(" ");
        assert!(text.contains("fell by more than 25 % for thread"), "{text}");
        assert!(
            text.contains(
                "Context switches per request fell with it for nonblocking (0.900 → 0.100"
            ),
            "{text}"
        );
        assert!(
            text.contains("Batched wake-ups do not explain the fall for thread (0.980"),
            "{text}"
        );
        assert!(!text.contains("while a blocked thread"), "{text}");
    }

    /// A model that lost some other clients in the crash (workers: the crashed
    /// worker's) is neither among those that lost none nor those that lost all.
    #[test]
    fn a_crash_that_took_some_clients_is_told_apart() {
        let row = |model: &str, lost: f64, survived: bool| crate::glance::Costs {
            model: model.into(),
            crash: Some((lost, 10, survived)),
            ..Default::default()
        };
        let rows = [
            row("fork", 0.0, true),
            row("thread", 10.0, false),
            row("workers", 2.0, true),
        ];
        let lesson = lessons(&rows)
            .into_iter()
            .find(|l| l.starts_with("When one handler crashed"))
            .expect("a crash lesson");
        assert!(lesson.contains("fork lost no other client"), "{lesson}");
        assert!(
            lesson.contains("workers (2 of 10) lost only the clients of the one process"),
            "{lesson}"
        );
        assert!(
            lesson.contains("thread lost every other client"),
            "{lesson}"
        );
    }

    /// Only windows the hypervisor took more than 5 % of the CPU time from are
    /// named, with the worst of them.
    #[test]
    fn stolen_windows_are_named_with_the_worst() {
        let cell = |model: &str, steal: Option<f64>| Cell {
            model: model.into(),
            scenario: "curve".into(),
            conns: 100,
            repeat: 0,
            server_cpus: 1,
            offered_rps: Some(2_000.0),
            work: "none".into(),
            status: crate::schema::STATUS_OK.into(),
            error: None,
            load: None,
            server: Some(crate::schema::ServerUsage {
                steal_share: steal,
                ..Default::default()
            }),
            hdr_log: None,
            extra: Default::default(),
            limit: None,
        };
        let (quiet, none, busy, worst) = (
            cell("thread", Some(0.01)),
            cell("pool", None),
            cell("async", Some(0.08)),
            cell("uring", Some(0.17)),
        );
        assert_eq!(steal_limit(&[&quiet, &none]), None);
        let line = steal_limit(&[&quiet, &none, &busy, &worst]).expect("two stolen windows");
        assert!(line.starts_with("In 2 of 4 cells the hypervisor"), "{line}");
        assert!(line.contains("most: 17 % in uring curve 100 r0"), "{line}");
    }

    /// A curve without a knee is explained by what failed at its first step: the
    /// worker queue only for models that have one, the load generator where it fell
    /// behind.
    #[test]
    fn a_missing_knee_is_explained_by_its_first_step() {
        let pool = no_knee("pool", NoKnee::Unserved);
        let iterative = no_knee("iterative", NoKnee::Unserved);
        let async_ = no_knee("async", NoKnee::LoadGenerator);
        let s = knee_sentence(&[&iterative, &pool, &async_]);
        assert!(
            s.contains("iterative and pool left clients unanswered even at the first step"),
            "{s}"
        );
        assert!(s.contains("the others wait however low the rate"), "{s}");
        assert!(
            s.contains("For async the load generator could not keep even the first step's"),
            "{s}"
        );
        assert!(!s.contains("async left"), "{s}");
        let thread = no_knee("thread", NoKnee::Unserved);
        let s = knee_sentence(&[&thread]);
        assert!(
            !s.contains("workers"),
            "thread has no workers to wait for: {s}"
        );
    }
}
