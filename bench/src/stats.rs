//! Per-worker tallies, merged at the end of a run, and the record of one run.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The reply the scenario expects.
    Ok,
    /// A reply, but not the expected one: `success=false`, `exists=false`, an unexpected HTTP
    /// status or item count.
    Business,
    /// No usable reply: connection refused or reset, timeout, a gRPC error status.
    Transport,
}

/// Latencies (µs) and outcome counts of one worker, or of all of them once merged.
pub struct Tally {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub business: u64,
    pub transport: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            // 1 µs .. 60 s at 3 significant digits.
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
            ok: 0,
            business: 0,
            transport: 0,
        }
    }

    /// Replies (expected or not) carry a latency; transport failures do not.
    pub fn record(&mut self, outcome: Outcome, micros: u64) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Business => self.business += 1,
            Outcome::Transport => {
                self.transport += 1;
                return;
            }
        }
        self.latency_us.saturating_record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Self) {
        self.ok += other.ok;
        self.business += other.business;
        self.transport += other.transport;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
    }

    /// Every request that finished inside the measured window, whatever its outcome.
    pub fn requests(&self) -> u64 {
        self.ok + self.business + self.transport
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latency_us.is_empty() {
            return 0.0;
        }
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }

    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

/// One process's resources during a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessUsage {
    pub name: String,
    pub pid: u32,
    /// utime + stime consumed during the measured window.
    pub cpu_s: f64,
    /// `cpu_s` over the measured seconds; 100 = one core busy.
    pub cpu_pct: f64,
    /// Largest VmRSS seen, sampled every 100 ms over warm-up and measurement.
    pub rss_peak_mb: f64,
    /// VmHWM at the end: the process's peak RSS over its whole life.
    pub hwm_mb: f64,
}

/// One scenario run: what `--json` appends, one object per line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Unix seconds at the end of the run.
    pub unix_time: u64,
    pub session: Option<String>,
    pub scenario: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    pub business_errors: u64,
    pub transport_errors: u64,
    /// Service CPU (excluding bench and redis) per measured request, in µs.
    pub service_cpu_us_per_req: f64,
    /// Host steal time during the measured window, summed over CPUs, and as a share of it.
    pub steal_s: f64,
    pub steal_pct: f64,
    pub processes: Vec<ProcessUsage>,
    /// `mixed` and `login-under-signups`: the create-user load next to the measured requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writers: Option<WriterLoad>,
}

/// The background load of `mixed` and `login-under-signups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriterLoad {
    /// Closed-loop workers (`mixed`); 0 for an open-loop load.
    pub workers: usize,
    /// Sign-ups attempted a second by an open-loop load (`login-under-signups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_per_s: Option<f64>,
    pub requests: u64,
    pub rps: f64,
    pub p99_ms: f64,
    pub business_errors: u64,
    pub transport_errors: u64,
}
