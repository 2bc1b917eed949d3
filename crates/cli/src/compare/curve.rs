//! The latency-vs-load curve: one server per model, open-loop steps at rising
//! offered rates until the server stops keeping up (the report finds the knee;
//! see `socklab_report::curve` for the rules).
//!
//! Steps are geometric, [`START_RPS`] × [`FACTOR`]^k: each offers 60 % more than
//! the one before, so a curve crosses two orders of magnitude in ten steps. The
//! curve stops after the first step that is not sustained (or not measured well):
//! that step is past the knee, and shows how far the tail bends there.

use socklab_report::curve::Step;
use socklab_report::schema::Cell;

use super::cell::{self, Bench};
use super::interrupt;
use super::matrix::{Job, ModelRun, Plan, Scenario};

/// The first step's offered rate: below every model's limit (the report names it).
pub const START_RPS: f64 = socklab_report::curve::FIRST_STEP_RPS;
/// Each step offers this much more than the one before.
pub const FACTOR: f64 = 1.6;
/// Most steps per curve (2,000 × 1.6¹³ ≈ 900,000 req/s, past any model here).
pub const MAX_STEPS: usize = 14;

/// One curve to measure.
#[derive(Debug, Clone)]
pub struct Curve {
    pub model: &'static ModelRun,
    pub conns: usize,
    pub repeat: usize,
    pub server_cpus: usize,
}

/// Every curve of the plan, interleaved like the timed cells.
pub fn curves(plan: &Plan, models: &[&'static ModelRun], scenarios: &[Scenario]) -> Vec<Curve> {
    if !scenarios.contains(&Scenario::Curve) {
        return Vec::new();
    }
    let mut out = Vec::new();
    for repeat in 0..plan.curve_repeats {
        for conns in plan.conns(Scenario::Curve) {
            for server_cpus in plan.cpus(Scenario::Curve) {
                for &model in models {
                    out.push(Curve {
                        model,
                        conns,
                        repeat,
                        server_cpus,
                    });
                }
            }
        }
    }
    out
}

impl Curve {
    fn step(&self, k: usize) -> Job {
        Job {
            model: self.model,
            scenario: Scenario::Curve,
            conns: self.conns,
            repeat: self.repeat,
            server_cpus: self.server_cpus,
            offered_rps: Some((START_RPS * FACTOR.powi(k as i32)).round()),
        }
    }

    /// Measures the curve's steps against one server, calling `done` with each new
    /// cell; steps already in `have` (a resumed run) are not measured again.
    pub fn run(&self, bench: &Bench, have: &[Cell], mut done: impl FnMut(Cell)) {
        let mut server = None;
        for k in 0..MAX_STEPS {
            if interrupt::requested() {
                return;
            }
            let job = self.step(k);
            if let Some(cell) = have.iter().find(|c| job.is(c)) {
                if Step::of(cell).is_none_or(|s| s.ends_curve()) {
                    return;
                }
                continue;
            }
            let mut cell = cell::empty_cell(&job);
            if server.is_none() {
                match bench.launch(&job).and_then(|l| l.start()) {
                    Ok(s) => server = Some(s),
                    Err(e) => {
                        cell::finish(&mut cell, Err(e));
                        done(cell);
                        return;
                    }
                }
            }
            let running = server.as_mut().expect("started above");
            let measured = bench.measure(&job, running, &mut cell).map(|_| ());
            let died = !running.alive();
            let outcome = match (measured, died) {
                (Err(e), _) => Err(e),
                (Ok(()), true) => Err(anyhow::anyhow!(
                    "the server died during the step: {}",
                    running.stderr_tail()
                )),
                (Ok(()), false) => Ok(()),
            };
            cell::finish(&mut cell, outcome);
            let ends = Step::of(&cell).is_none_or(|s| s.ends_curve());
            done(cell);
            if ends {
                break;
            }
        }
        if let Some(s) = server {
            let _ = s.stop();
        }
    }
}
