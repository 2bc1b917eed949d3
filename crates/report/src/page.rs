//! The page's context and plan: what every part of the report reads (the results and
//! their summary, with the lookups figures and sentences share), and which sections
//! the page has, in order. The Markdown and HTML pages render the same plan.

use crate::aggregate::{Group, Summary};
use crate::compare::Entry;
use crate::figures::Target;
use crate::format;
use crate::schema::Results;

/// What the planner reads.
pub struct Ctx<'a> {
    pub results: &'a Results,
    pub summary: &'a Summary,
}

impl Ctx<'_> {
    /// Whether the server could use more than one CPU: not pinned, several CPUs.
    pub fn multicore(&self) -> bool {
        self.results.run.server_cpu.is_none() && self.results.machine.cpus > 1
    }

    /// Groups of one scenario and work.
    pub fn groups<'s>(
        &'s self,
        scenario: &'s str,
        work: &'s str,
    ) -> impl Iterator<Item = &'s Group> {
        self.summary
            .in_scenario(scenario)
            .filter(move |g| g.work == work)
    }

    pub fn group(&self, model: &str, scenario: &str, work: &str, conns: usize) -> Option<&Group> {
        self.summary.groups.iter().find(|g| {
            g.scenario == scenario && g.work == work && g.model == model && g.conns == conns
        })
    }

    /// The largest connection count where at least two models measured `target`.
    pub fn key_conns(&self, scenario: &str, work: &str, target: &Target) -> Option<usize> {
        self.summary
            .key_conns(scenario, |g| g.work == work && target.get(g).is_some())
    }
}

/// Every model's range of `target` at `conns`, in model order.
pub fn entries_at<'c>(
    ctx: &'c Ctx,
    scenario: &str,
    work: &str,
    target: &Target,
    conns: usize,
) -> Vec<Entry<'c>> {
    ctx.summary
        .models
        .iter()
        .filter_map(|m| {
            let range = target.get(ctx.group(m, scenario, work, conns)?)?;
            Some(Entry {
                model: m.as_str(),
                range,
            })
        })
        .collect()
}

pub fn context(conns: usize) -> String {
    format!("At {}", format::conns(conns))
}
