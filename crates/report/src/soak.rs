//! The soak's verdict: does a server's descriptor count, memory, thread or process
//! count grow over a long run of mixed clients, beyond its noise?
//!
//! `socklab soak` samples the server between rounds of clients, when every client
//! of the round has gone: a healthy server is then back to the same resting state
//! each time, whatever it did during the round. A leak of one descriptor per 100
//! connections, or a few bytes per request, shows as a line that climbs round after
//! round. The test is a least-squares line through the resting samples (the first
//! [`WARM_ROUNDS`] left out: allocators and thread caches grow to their working
//! size first): the series grows when the line rises over the run by more than
//! three times the scatter of the samples around it, and by more than the metric's
//! floor (a few descriptors, a few MiB), so that a one-off step is not a leak.

use serde::{Deserialize, Serialize};

/// Rounds at the start left out of the fit.
pub const WARM_ROUNDS: usize = 2;
/// Fewest rounds the fit needs after the warm ones.
pub const MIN_FIT_ROUNDS: usize = 4;
/// How many times its noise a series must grow by to count as growing.
pub const NOISE_FACTOR: f64 = 3.0;

/// One soak of one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Soak {
    pub model: String,
    pub seconds: f64,
    pub rounds: usize,
    /// Connections the clients opened (persistent, churn, slow, resetting).
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
    pub series: Vec<Series>,
    /// Why the soak could not tell (too few rounds, the server died).
    #[serde(default)]
    pub notes: Vec<String>,
}

impl Soak {
    /// Whether any series grew beyond its noise.
    pub fn leaks(&self) -> bool {
        self.series.iter().any(|s| s.grows)
    }
}

/// One resource of the server's tree, sampled at rest after every round.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// `fds`, `rss`, `threads`, `processes`.
    pub name: String,
    /// `count` or `bytes`.
    pub unit: String,
    pub values: Vec<f64>,
    /// The most seen while clients were connected.
    pub peak: f64,
    /// The fitted line's slope, per minute.
    pub per_minute: f64,
    /// The line's rise over the fitted rounds.
    pub growth: f64,
    /// Standard deviation of the samples around the line.
    pub noise: f64,
    pub grows: bool,
}

impl Series {
    /// The verdict on `values` (one per round, `round_s` apart); `floor` is the
    /// smallest growth that can count (in the values' unit).
    pub fn judge(
        name: &str,
        unit: &str,
        values: Vec<f64>,
        peak: f64,
        round_s: f64,
        floor: f64,
    ) -> Series {
        let fitted = values.get(WARM_ROUNDS..).unwrap_or(&[]);
        let (slope, noise) = if fitted.len() >= MIN_FIT_ROUNDS {
            line(fitted)
        } else {
            (0.0, 0.0)
        };
        let growth = slope * (fitted.len().saturating_sub(1)) as f64;
        Series {
            name: name.to_string(),
            unit: unit.to_string(),
            peak,
            per_minute: if round_s > 0.0 {
                slope * 60.0 / round_s
            } else {
                0.0
            },
            growth,
            noise,
            grows: growth > floor && growth > NOISE_FACTOR * noise,
            values,
        }
    }
}

/// Least squares through `(i, y[i])`: the slope, and the standard deviation of the
/// residuals.
fn line(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let residual = y
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let fit = mean_y + slope * (i as f64 - mean_x);
            (v - fit).powi(2)
        })
        .sum::<f64>();
    let dof = (n - 2.0).max(1.0);
    (slope, (residual / dof).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(values: &[f64], floor: f64) -> Series {
        Series::judge("fds", "count", values.to_vec(), 0.0, 3.0, floor)
    }

    /// A resting count that wobbles does not grow; one that climbs does.
    #[test]
    fn a_climb_grows_and_a_wobble_does_not() {
        let wobble = judge(&[40.0, 44.0, 30.0, 31.0, 29.0, 31.0, 30.0, 29.0, 31.0], 3.0);
        assert!(!wobble.grows, "{wobble:?}");
        let leak: Vec<f64> = (0..9)
            .map(|i| 30.0 + 12.0 * i as f64 + (i % 2) as f64)
            .collect();
        let leak = judge(&leak, 3.0);
        assert!(leak.grows, "{leak:?}");
        assert!((leak.per_minute - 12.0 * 20.0).abs() < 10.0, "{leak:?}");
    }

    /// One step up (a cache filling once) is below the floor, or inside the noise.
    #[test]
    fn a_small_step_is_not_a_leak() {
        let step = judge(&[30.0, 30.0, 30.0, 30.0, 30.0, 32.0, 32.0, 32.0, 32.0], 3.0);
        assert!(!step.grows, "{step:?}");
    }

    /// Too few rounds to fit: no verdict of growth.
    #[test]
    fn too_few_rounds_never_grow() {
        assert!(!judge(&[1.0, 50.0, 100.0, 150.0], 3.0).grows);
    }
}
