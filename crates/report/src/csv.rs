//! results.csv: one flat row per timed cell, for spreadsheets and pandas.
//!
//! Every repeat is its own row (no medians here): whoever reads the CSV can
//! aggregate differently. Derived columns (CPU µs per request, PSS per
//! connection) use the same functions as the report. Written by hand: the quoting
//! rules of RFC 4180 fit in one function and need no dependency.

use std::collections::BTreeSet;

use crate::schema::{Cell, Results};

/// The fixed columns, in order; `extra_<name>` columns follow, one per extra
/// any cell recorded.
pub const COLUMNS: &[&str] = &[
    "model",
    "scenario",
    "conns",
    "repeat",
    "server_cpus",
    "offered_rps",
    "work",
    "status",
    "error",
    "requests",
    "duration_s",
    "throughput_rps",
    "bytes_per_s",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "p9999_us",
    "max_us",
    "mean_us",
    "timed_p99_us",
    "timed_mean_us",
    "little_predicted_mean_us",
    "waiting",
    "clients_served",
    "requests_per_client_min",
    "requests_per_client_median",
    "requests_per_client_max",
    "fairness",
    "ramp_s",
    "ramp_complete",
    "clients_with_errors",
    "unserved",
    "mismatches",
    "resets",
    "refused",
    "timeouts",
    "lost",
    "errors_other",
    "connects_per_s",
    "connect_p50_us",
    "connect_p99_us",
    "server_cpu_user_s",
    "server_cpu_system_s",
    "server_cpu_us_per_request",
    "server_window_s",
    "server_requests",
    "held_conns",
    "voluntary_ctx",
    "involuntary_ctx",
    "ctx_switches_per_request",
    "processes_max",
    "threads_max",
    "rss_idle_bytes",
    "rss_max_bytes",
    "pss_idle_bytes",
    "pss_max_bytes",
    "rss_per_conn_bytes",
    "pss_per_conn_bytes",
    "loadgen_cpu_s",
    "loadgen_cpu_util",
    "steal_share",
    "hdr_log",
];

pub fn render(results: &Results) -> String {
    let extras: BTreeSet<&str> = results
        .cells
        .iter()
        .flat_map(|c| c.extra.keys().map(String::as_str))
        .collect();
    let mut out = String::new();
    let header: Vec<String> = COLUMNS
        .iter()
        .map(|c| c.to_string())
        .chain(extras.iter().map(|e| format!("extra_{e}")))
        .collect();
    push_row(&mut out, &header);
    for cell in &results.cells {
        let mut row = fields(cell);
        row.extend(extras.iter().map(|e| {
            cell.extra
                .get(*e)
                .map(|v| v.to_string())
                .unwrap_or_default()
        }));
        push_row(&mut out, &row);
    }
    out
}

fn fields(c: &Cell) -> Vec<String> {
    let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
    let load = c.load.as_ref();
    let lat = load.map(|l| l.latency_us);
    let err = load.map(|l| l.errors);
    let clients = load.and_then(|l| l.clients);
    let ramp = load.and_then(|l| l.ramp);
    let s = c.server.as_ref();
    let mut row = vec![
        c.model.clone(),
        c.scenario.clone(),
        c.conns.to_string(),
        c.repeat.to_string(),
        c.server_cpus.to_string(),
        opt(c.offered_rps),
        c.work.clone(),
        c.status.clone(),
        c.error.clone().unwrap_or_default(),
    ];
    let numbers: Vec<Option<f64>> = vec![
        load.map(|l| l.requests as f64),
        load.map(|l| l.duration_s),
        load.map(|l| l.throughput_rps),
        load.map(|l| l.bytes_per_s),
        lat.map(|p| p.p50),
        lat.map(|p| p.p90),
        lat.map(|p| p.p99),
        lat.map(|p| p.p999),
        lat.map(|p| p.p9999),
        lat.map(|p| p.max),
        lat.map(|p| p.mean),
        load.map(|l| l.latency_timed_us.p99),
        load.map(|l| l.latency_timed_us.mean),
        load.and_then(|l| l.little).map(|l| l.predicted_mean_us),
        load.map(|l| l.waiting as f64),
        clients.map(|c| c.served as f64),
        clients.map(|c| c.requests_min as f64),
        clients.map(|c| c.requests_median),
        clients.map(|c| c.requests_max as f64),
        clients.and_then(|c| c.fairness),
        ramp.map(|r| r.length_s),
        ramp.map(|r| f64::from(u8::from(r.complete))),
        err.map(|e| e.clients as f64),
        err.map(|e| e.unserved_conns as f64),
        err.map(|e| e.mismatches as f64),
        err.map(|e| e.resets as f64),
        err.map(|e| e.refused as f64),
        err.map(|e| e.timeouts as f64),
        err.map(|e| e.lost as f64),
        err.map(|e| e.other as f64),
        load.and_then(|l| l.connects_per_s),
        load.and_then(|l| l.connect_latency_us).map(|p| p.p50),
        load.and_then(|l| l.connect_latency_us).map(|p| p.p99),
        s.map(|s| s.cpu_user_s),
        s.map(|s| s.cpu_system_s),
        c.cpu_us_per_request(),
        s.map(|s| s.window_s),
        s.and_then(|s| s.requests).map(|n| n as f64),
        s.and_then(|s| s.held_conns).map(|n| n as f64),
        s.map(|s| s.voluntary_ctx as f64),
        s.map(|s| s.involuntary_ctx as f64),
        c.ctx_per_request(),
        s.map(|s| s.processes_max as f64),
        s.map(|s| s.threads_max as f64),
        s.map(|s| s.rss_idle_bytes as f64),
        s.map(|s| s.rss_max_bytes as f64),
        s.map(|s| s.pss_idle_bytes as f64),
        s.map(|s| s.pss_max_bytes as f64),
        c.rss_per_conn_bytes(),
        c.pss_per_conn_bytes(),
        load.map(|l| l.loadgen_cpu_s),
        load.map(|l| l.loadgen_cpu_util),
        s.and_then(|s| s.steal_share),
    ];
    row.extend(numbers.into_iter().map(opt));
    row.push(c.hdr_log.clone().unwrap_or_default());
    debug_assert_eq!(row.len(), COLUMNS.len());
    row
}

fn push_row(out: &mut String, fields: &[String]) {
    let quoted: Vec<String> = fields.iter().map(|f| quote(f)).collect();
    out.push_str(&quoted.join(","));
    out.push('\n');
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled.
fn quote(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commas, quotes and newlines in an error message cannot break the columns.
    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\"\nnow"), "\"say \"\"hi\"\"\nnow\"");
    }
}
