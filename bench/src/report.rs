//! Tables for people, JSON lines for tools, and the targets the numbers are judged by.

use std::{
    fs::{self, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::Path,
};

use anyhow::Context;

use crate::stats::{ProcessUsage, RunResult};

/// Targets apply to runs at this concurrency (2-core machine, generator on the same cores).
pub const TARGET_CONCURRENCY: usize = 32;
/// Largest acceptable peak RSS of a service process.
pub const MAX_SERVICE_RSS_MB: f64 = 25.0;

/// What a scenario must reach at [`TARGET_CONCURRENCY`].
pub struct Target {
    pub scenario: &'static str,
    pub min_rps: Option<f64>,
    pub max_p99_ms: Option<f64>,
}

/// The one table of targets.
pub const TARGETS: &[Target] = &[
    Target {
        scenario: "send-message",
        min_rps: Some(3_000.0),
        max_p99_ms: Some(25.0),
    },
    Target {
        scenario: "check-user-exists",
        min_rps: Some(13_000.0),
        max_p99_ms: Some(5.0),
    },
    Target {
        scenario: "list-conversations",
        min_rps: Some(7_500.0),
        max_p99_ms: Some(10.0),
    },
    Target {
        scenario: "list-notifications",
        min_rps: Some(7_500.0),
        max_p99_ms: Some(10.0),
    },
    Target {
        scenario: "list-notifications-page",
        min_rps: Some(7_500.0),
        max_p99_ms: None,
    },
    Target {
        scenario: "send-to-watch",
        min_rps: None,
        max_p99_ms: Some(20.0),
    },
    Target {
        scenario: "create-user",
        min_rps: Some(8.0),
        max_p99_ms: None,
    },
    // The check-user-exists latency while create-user saturates the user-service.
    Target {
        scenario: "mixed",
        min_rps: None,
        max_p99_ms: Some(10.0),
    },
];

fn target_of(scenario: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.scenario == scenario)
}

/// The target as text, e.g. `>=2500rps p99<=25ms`.
fn target_text(row: &RunResult) -> String {
    match target_of(&row.scenario) {
        Some(t) if row.concurrency == TARGET_CONCURRENCY => {
            let mut parts = Vec::new();
            if let Some(rps) = t.min_rps {
                parts.push(format!(">={rps}rps"));
            }
            if let Some(p99) = t.max_p99_ms {
                parts.push(format!("p99<={p99}ms"));
            }
            parts.join(" ")
        }
        _ => "-".to_owned(),
    }
}

/// PASS, FAIL(reasons), or `-` when no target applies.
pub fn verdict(row: &RunResult) -> String {
    let Some(target) = target_of(&row.scenario) else {
        return "-".to_owned();
    };
    if row.concurrency != TARGET_CONCURRENCY {
        return "-".to_owned();
    }
    let mut misses = Vec::new();
    if target.min_rps.is_some_and(|min| row.rps < min) {
        misses.push("rps");
    }
    if target.max_p99_ms.is_some_and(|max| row.p99_ms > max) {
        misses.push("p99");
    }
    if row.business_errors + row.transport_errors > 0 || row.requests == 0 {
        misses.push("errors");
    }
    if service_rss_mb(row) > MAX_SERVICE_RSS_MB {
        misses.push("rss");
    }
    if misses.is_empty() {
        "PASS".to_owned()
    } else {
        format!("FAIL({})", misses.join(","))
    }
}

/// The largest RSS any service process reached during the run.
fn service_rss_mb(row: &RunResult) -> f64 {
    row.processes
        .iter()
        .filter(|p| p.name.ends_with("-service"))
        .map(|p| p.rss_peak_mb)
        .fold(0.0, f64::max)
}

fn rss_verdict(process: &ProcessUsage) -> &'static str {
    if !process.name.ends_with("-service") {
        "-"
    } else if process.hwm_mb.max(process.rss_peak_mb) <= MAX_SERVICE_RSS_MB {
        "PASS"
    } else {
        "FAIL"
    }
}

fn write_header(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<19} {:>4} {:>4} {:>8} {:>9} {:>7} {:>7} {:>7} {:>8} {:>6} {:>6} {:>8} {:>6} {:>6} {:<24} verdict",
        "scenario",
        "conc",
        "runs",
        "requests",
        "rps",
        "p50ms",
        "p90ms",
        "p99ms",
        "maxms",
        "bizerr",
        "txerr",
        "cpuus/rq",
        "rssMB",
        "steal%",
        "target"
    )
}

fn write_row(out: &mut impl Write, row: &RunResult, runs: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<19} {:>4} {:>4} {:>8} {:>9.1} {:>7.2} {:>7.2} {:>7.2} {:>8.2} {:>6} {:>6} {:>8.0} {:>6.1} {:>6.1} {:<24} {}",
        row.scenario,
        row.concurrency,
        runs,
        row.requests,
        row.rps,
        row.p50_ms,
        row.p90_ms,
        row.p99_ms,
        row.max_ms,
        row.business_errors,
        row.transport_errors,
        row.service_cpu_us_per_req,
        service_rss_mb(row),
        row.steal_pct,
        target_text(row),
        verdict(row)
    )?;
    if let Some(w) = &row.writers {
        let load = match w.offered_per_s {
            Some(offered) => format!("offered={offered:.0}/s"),
            None => format!("writers={}", w.workers),
        };
        writeln!(
            out,
            "  + create-user {load} requests={} rps={:.1} p99ms={:.1} bizerr={} txerr={}",
            w.requests, w.rps, w.p99_ms, w.business_errors, w.transport_errors
        )?;
    }
    Ok(())
}

fn write_processes(out: &mut impl Write, processes: &[ProcessUsage]) -> std::io::Result<()> {
    writeln!(
        out,
        "  {:<22} {:>8} {:>8} {:>7} {:>11} {:>9} rss<=25MB",
        "process", "pid", "cpu_s", "cpu%", "rss_peakMB", "VmHWM_MB"
    )?;
    for p in processes {
        writeln!(
            out,
            "  {:<22} {:>8} {:>8.2} {:>7.1} {:>11.1} {:>9.1} {}",
            p.name,
            p.pid,
            p.cpu_s,
            p.cpu_pct,
            p.rss_peak_mb,
            p.hwm_mb,
            rss_verdict(p)
        )?;
    }
    Ok(())
}

/// The row of one run and its processes, on stdout.
pub fn print_run(row: &RunResult) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write_header(&mut out)?;
    write_row(&mut out, row, 1)?;
    write_processes(&mut out, &row.processes)?;
    Ok(())
}

/// Appends `row` as one JSON line, creating the file (and its directory) if needed.
pub fn append_json(path: &Path, row: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(row)?)?;
    Ok(())
}

/// The median of each (scenario, concurrency) over the file's rows (of `session` if given),
/// each figure's median taken on its own, then each process's peak RSS over all of them.
pub fn summarise(path: &Path, session: Option<&str>) -> anyhow::Result<()> {
    let file = fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut rows: Vec<RunResult> = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let row: RunResult = serde_json::from_str(&line).context("a JSON line of a run")?;
        if session.is_none() || row.session.as_deref() == session {
            rows.push(row);
        }
    }
    // Groups in order of first appearance.
    let mut groups: Vec<Vec<RunResult>> = Vec::new();
    for row in rows {
        match groups
            .iter_mut()
            .find(|g| g[0].scenario == row.scenario && g[0].concurrency == row.concurrency)
        {
            Some(group) => group.push(row),
            None => groups.push(vec![row]),
        }
    }
    let mut out = std::io::stdout().lock();
    write_header(&mut out)?;
    let mut peaks: Vec<ProcessUsage> = Vec::new();
    let mut measured_s = 0.0;
    for group in &groups {
        write_row(&mut out, &median_row(group), group.len())?;
        measured_s += group.iter().map(|r| r.duration_s).fold(0.0, |a, b| a + b);
        for p in group.iter().flat_map(|r| &r.processes) {
            match peaks.iter_mut().find(|q| q.name == p.name) {
                Some(q) => {
                    q.rss_peak_mb = q.rss_peak_mb.max(p.rss_peak_mb);
                    q.hwm_mb = q.hwm_mb.max(p.hwm_mb);
                    q.cpu_s += p.cpu_s;
                }
                None => peaks.push(p.clone()),
            }
        }
    }
    for p in &mut peaks {
        p.cpu_pct = if measured_s > 0.0 {
            100.0 * p.cpu_s / measured_s
        } else {
            0.0
        };
    }
    writeln!(
        out,
        "\nover all runs above: cpu_s summed (cpu% of the measured time), peak memory:"
    )?;
    write_processes(&mut out, &peaks)?;
    Ok(())
}

fn median_row(group: &[RunResult]) -> RunResult {
    let median = |f: &dyn Fn(&RunResult) -> f64| {
        let mut values: Vec<f64> = group.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        }
    };
    let mut row = group[0].clone();
    row.requests = median(&|r| r.requests as f64) as u64;
    row.rps = median(&|r| r.rps);
    row.p50_ms = median(&|r| r.p50_ms);
    row.p90_ms = median(&|r| r.p90_ms);
    row.p99_ms = median(&|r| r.p99_ms);
    row.max_ms = median(&|r| r.max_ms);
    row.mean_ms = median(&|r| r.mean_ms);
    row.business_errors = median(&|r| r.business_errors as f64) as u64;
    row.transport_errors = median(&|r| r.transport_errors as f64) as u64;
    row.service_cpu_us_per_req = median(&|r| r.service_cpu_us_per_req);
    row.steal_pct = median(&|r| r.steal_pct);
    row.steal_s = median(&|r| r.steal_s);
    // Memory is judged by its worst run, not its median one.
    for p in &mut row.processes {
        for other in group.iter().flat_map(|r| &r.processes) {
            if other.name == p.name {
                p.rss_peak_mb = p.rss_peak_mb.max(other.rss_peak_mb);
                p.hwm_mb = p.hwm_mb.max(other.hwm_mb);
            }
        }
    }
    row
}
