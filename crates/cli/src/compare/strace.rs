//! Reading `strace -f -c` summaries: syscalls counted, not timed.

use std::collections::BTreeMap;

/// Parses the table `strace -c` writes: calls per syscall name (the `total` row
/// is left out). Lines that are not table rows are ignored.
pub fn parse_summary(text: &str) -> BTreeMap<String, u64> {
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors], syscall
        if !(5..=6).contains(&words.len()) || words[0].parse::<f64>().is_err() {
            continue;
        }
        let name = words[words.len() - 1];
        if name == "total" {
            continue;
        }
        if let Ok(n) = words[3].parse::<u64>() {
            *calls.entry(name.to_string()).or_insert(0) += n;
        }
    }
    calls
}

/// The calls the longer of two runs made beyond the shorter: divided by the extra
/// requests, that is the per-request count. Start-up and shutdown syscalls are the
/// same in both runs and cancel.
pub fn marginal(
    short: &BTreeMap<String, u64>,
    long: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    long.iter()
        .map(|(name, &n)| {
            (
                name.clone(),
                n.saturating_sub(short.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, extra)| *extra > 0)
        .collect()
}

/// As [`marginal`], but refused when the longer run made fewer calls in all than the
/// shorter: then the count follows timing, not requests. Measured: uring at 100
/// connections under strace made 302 `io_uring_enter` calls over 5,000 requests and
/// 169 over 10,000, each call carrying however many requests had piled up meanwhile.
pub fn marginal_checked(
    short: &BTreeMap<String, u64>,
    long: &BTreeMap<String, u64>,
    (short_requests, long_requests): (u64, u64),
) -> Result<BTreeMap<String, u64>, String> {
    let (a, b): (u64, u64) = (short.values().sum(), long.values().sum());
    if b < a {
        return Err(format!(
            "syscalls: {b} calls over {long_requests} requests against {a} over \
             {short_requests}: the count follows how many requests each call batched \
             (timing), not the requests, so no per-request figure"
        ));
    }
    Ok(marginal(short, long))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 52.10    0.010000           5      2001           read
 40.00    0.008000           4      2000           write
  5.00    0.001000          10       100        99 accept4
  2.90    0.000500          50        10           clone3
------ ----------- ----------- --------- --------- ----------------
100.00    0.019500                  4111        99 total
";

    #[test]
    fn reads_calls_per_syscall_and_skips_the_total() {
        let calls = parse_summary(SAMPLE);
        assert_eq!(calls["read"], 2001);
        assert_eq!(calls["accept4"], 100);
        assert_eq!(calls["clone3"], 10);
        assert!(!calls.contains_key("total"));
        assert_eq!(calls.len(), 4);
    }

    #[test]
    fn marginal_cancels_start_up() {
        let short = parse_summary(SAMPLE);
        let mut long = short.clone();
        *long.get_mut("read").unwrap() += 1000;
        *long.get_mut("write").unwrap() += 1000;
        let per = marginal(&short, &long);
        assert_eq!(per["read"], 1000);
        assert_eq!(per["write"], 1000);
        assert!(!per.contains_key("clone3"));
    }

    #[test]
    fn fewer_calls_for_more_requests_is_no_count() {
        let short = BTreeMap::from([("io_uring_enter".to_string(), 302), ("close".into(), 117)]);
        let long = BTreeMap::from([("io_uring_enter".to_string(), 169), ("close".into(), 117)]);
        let err = marginal_checked(&short, &long, (5_000, 10_000)).unwrap_err();
        assert!(
            err.contains("286 calls over 10000 requests against 419 over 5000"),
            "{err}"
        );
        let short = parse_summary(SAMPLE);
        let mut long = short.clone();
        *long.get_mut("read").unwrap() += 1000;
        assert_eq!(
            marginal_checked(&short, &long, (1_000, 2_000)).unwrap()["read"],
            1000
        );
    }
}
