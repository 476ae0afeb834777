//! sse-fanout: frontend-service holding many Server-Sent Events streams (`GET /live`, one per
//! receiver) while messages arrive at a steady rate, sent on their own schedule whatever became
//! of the earlier ones (open loop). Measures send→event latency, what an open stream costs in
//! frontend-service's RSS, and whether it holds many idle streams at once.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use proto::message_service::{Message, SendMessageRequest};
use serde::Serialize;
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

use crate::{
    cli::{Endpoints, FanoutArgs},
    clients::Clients,
    procstat, seed,
};

/// Targets (issue: browsers reach the inbox).
const MAX_P99_MS: f64 = 50.0;
const MAX_KB_PER_IDLE_STREAM: f64 = 16.0;
/// How long the streams may take to open, and a send's event to arrive, before it counts as
/// missing.
const OPEN_TIMEOUT: Duration = Duration::from_secs(180);
const EVENT_GRACE: Duration = Duration::from_secs(5);
/// Streams opened at once: a burst of thousands of connects would only measure the accept queue.
const OPENING_AT_ONCE: usize = 64;

/// The record of one fan-out run, printed and appended as one JSON line.
#[derive(Debug, Serialize)]
pub struct FanoutResult {
    pub unix_time: u64,
    pub session: Option<String>,
    pub scenario: &'static str,
    pub streams: usize,
    pub sends_per_s: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub send_errors: u64,
    pub events: u64,
    pub missing_events: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub frontend_rss_base_mb: f64,
    pub frontend_rss_open_mb: f64,
    pub frontend_kb_per_stream: f64,
    pub idle_streams_wanted: usize,
    pub idle_streams_held: usize,
    pub frontend_kb_per_idle_stream: f64,
    pub steal_pct: f64,
    pub verdict: String,
}

/// When each receiver's outstanding message was sent, and the latencies seen so far.
struct Timings {
    sent_at: Vec<Option<Instant>>,
    measure_from: Instant,
    latency_us: Histogram<u64>,
    events: u64,
}

type Shared = Arc<Mutex<Timings>>;

fn lock(timings: &Shared) -> std::sync::MutexGuard<'_, Timings> {
    timings.lock().unwrap_or_else(PoisonError::into_inner)
}

pub async fn run(
    clients: &Clients,
    endpoints: &Endpoints,
    args: &FanoutArgs,
) -> anyhow::Result<FanoutResult> {
    // Thousands of sockets: the generator raises its own descriptor limit, the service's
    // defaults stay as they are (it raises its soft limit to the hard one itself).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    if endpoints.users <= args.streams {
        bail!(
            "--users must exceed --streams (one receiver per stream plus a sender); run `bench --users {} setup` first",
            args.streams + 1
        );
    }
    let frontend = procstat::watched(endpoints, &args.pids)?
        .into_iter()
        .find(|w| w.name == "frontend-service")
        .context("frontend-service's pid (pass --pids frontend-service=PID)")?;
    let rss_mb = || procstat::status_mb(frontend.pid, "VmRSS").unwrap_or(0.0);
    let live_url = format!("http://{}:{}/live", endpoints.host, endpoints.frontend_http);
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .build()
        .context("HTTP client")?;

    let rss_base = rss_mb();
    let start = Instant::now();
    let measure_from = start + OPEN_TIMEOUT + Duration::from_secs_f64(args.warmup);
    let timings: Shared = Arc::new(Mutex::new(Timings {
        sent_at: vec![None; args.streams],
        measure_from,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        events: 0,
    }));
    let receivers: Vec<String> = (0..args.streams).map(seed::user_email).collect();
    let (opened, mut streams) = open_streams(&http, &live_url, &receivers, Some(&timings)).await?;
    if opened < args.streams {
        bail!("only {opened} of {} streams opened", args.streams);
    }
    let rss_open = rss_mb();

    // The measured window starts once every stream is open and replayed.
    let measure_from = Instant::now() + Duration::from_secs_f64(args.warmup);
    lock(&timings).measure_from = measure_from;
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let steal_before = procstat::steal_seconds();
    let (sent, send_errors) = send_steadily(clients, args, &timings, end, measure_from).await;
    tokio::time::sleep(EVENT_GRACE).await;
    let steal_after = procstat::steal_seconds();
    let missing = lock(&timings).sent_at.iter().flatten().count() as u64;

    // Idle streams on top: addresses that get nothing, so each costs only its holding.
    let rss_before_idle = rss_mb();
    let idle: Vec<String> = (0..args.idle_streams)
        .map(|i| format!("bench-idle-{i}@bench.example.com"))
        .collect();
    let (idle_held, idle_streams) = open_streams(&http, &live_url, &idle, None).await?;
    let rss_idle = rss_mb();
    streams.abort_all();
    drop(idle_streams);

    let timings = lock(&timings);
    let quantile = |q: f64| timings.latency_us.value_at_quantile(q) as f64 / 1000.0;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let measured_s = args.duration + EVENT_GRACE.as_secs_f64();
    let mut result = FanoutResult {
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        session: args.session.clone(),
        scenario: "sse-fanout",
        streams: args.streams,
        sends_per_s: args.rate,
        duration_s: args.duration,
        sent,
        send_errors,
        events: timings.events,
        missing_events: missing,
        p50_ms: quantile(0.50),
        p99_ms: quantile(0.99),
        max_ms: timings.latency_us.max() as f64 / 1000.0,
        frontend_rss_base_mb: rss_base,
        frontend_rss_open_mb: rss_open,
        frontend_kb_per_stream: 1024.0 * (rss_open - rss_base) / args.streams.max(1) as f64,
        idle_streams_wanted: args.idle_streams,
        idle_streams_held: idle_held,
        frontend_kb_per_idle_stream: 1024.0 * (rss_idle - rss_before_idle)
            / idle_held.max(1) as f64,
        steal_pct: 100.0 * (steal_after - steal_before).max(0.0) / (cpus * measured_s),
        verdict: String::new(),
    };
    result.verdict = verdict(&result);
    Ok(result)
}

/// PASS, or FAIL with what missed its target.
fn verdict(result: &FanoutResult) -> String {
    let mut misses = Vec::new();
    if result.p99_ms > MAX_P99_MS {
        misses.push("p99");
    }
    if result.frontend_kb_per_idle_stream > MAX_KB_PER_IDLE_STREAM {
        misses.push("rss");
    }
    if result.idle_streams_held < result.idle_streams_wanted {
        misses.push("held");
    }
    if result.send_errors + result.missing_events > 0 || result.events == 0 {
        misses.push("errors");
    }
    if misses.is_empty() {
        "PASS".to_owned()
    } else {
        format!("FAIL({})", misses.join(","))
    }
}

/// Opens one stream per address (a few at a time) and waits until each has finished its
/// replay (its first `unread` event). Events of streams with `timings` are timed. Returns how
/// many opened, and the tasks holding them (dropping the set closes them).
async fn open_streams(
    http: &reqwest::Client,
    live_url: &str,
    addresses: &[String],
    timings: Option<&Shared>,
) -> anyhow::Result<(usize, JoinSet<()>)> {
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
    let mut holders = JoinSet::new();
    for (index, address) in addresses.iter().enumerate() {
        let request = http.get(live_url).query(&[("email", address.as_str())]);
        let timings = timings.cloned();
        let opening = opening.clone();
        let ready = ready_tx.clone();
        holders.spawn(async move {
            let permit = opening.acquire_owned().await;
            let stream = match request.send().await {
                Ok(response) if response.status().is_success() => response,
                _ => {
                    let _ = ready.send(false);
                    return;
                }
            };
            drop(permit);
            read_events(stream, index, timings, ready).await;
        });
    }
    drop(ready_tx);
    let deadline = Instant::now() + OPEN_TIMEOUT;
    let mut opened = 0;
    for _ in addresses {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(true)) => opened += 1,
            Ok(Some(false)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    Ok((opened, holders))
}

/// Reads one stream's events until it ends: says `ready` at its first `unread` event (the
/// replay is done), and times each notification against its receiver's outstanding send.
async fn read_events(
    mut response: reqwest::Response,
    receiver: usize,
    timings: Option<Shared>,
    ready: tokio::sync::mpsc::UnboundedSender<bool>,
) {
    let mut buffer = Vec::new();
    let mut said_ready = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = find_blank_line(&buffer) {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            let kind = event_kind(&event);
            if kind == Some("unread") && !said_ready {
                said_ready = true;
                let _ = ready.send(true);
            }
            if kind == Some("notification")
                && let Some(timings) = &timings
            {
                let now = Instant::now();
                let mut timings = lock(timings);
                if let Some(sent) = timings.sent_at[receiver].take()
                    && sent >= timings.measure_from
                {
                    let micros = u64::try_from((now - sent).as_micros()).unwrap_or(u64::MAX);
                    timings.latency_us.saturating_record(micros.max(1));
                    timings.events += 1;
                }
            }
        }
    }
    if !said_ready {
        let _ = ready.send(false);
    }
}

fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|pair| pair == b"\n\n")
}

/// The `event:` field of one event block, if any.
fn event_kind(event: &[u8]) -> Option<&str> {
    std::str::from_utf8(event)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("event:").map(str::trim))
}

/// Sends `args.rate` messages a second until `end`, the i-th to receiver `i % streams` (so a
/// receiver's messages are seconds apart and each event belongs to one send), all from the
/// one extra seeded user. Returns (sent inside the window, failed).
async fn send_steadily(
    clients: &Clients,
    args: &FanoutArgs,
    timings: &Shared,
    end: Instant,
    measure_from: Instant,
) -> (u64, u64) {
    let sender = seed::user_email(args.streams);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = JoinSet::new();
    for seq in 0_usize.. {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        let receiver = seq % args.streams;
        lock(timings).sent_at[receiver] = Some(now);
        let mut client = clients.message(seq);
        let request = SendMessageRequest {
            message: Some(Message {
                sender_email: Some(sender.clone()),
                receiver_email: Some(seed::user_email(receiver)),
                content: Some(format!("fanout {seq}")),
                ..Message::default()
            }),
            idempotency_key: None,
        };
        sends.spawn(async move {
            let ok = matches!(client.send_message(request).await,
                Ok(reply) if reply.get_ref().success == Some(true));
            (ok, now >= measure_from)
        });
    }
    let (mut sent, mut failed) = (0, 0);
    while let Some(done) = sends.join_next().await {
        match done {
            Ok((true, true)) => sent += 1,
            Ok((true, false)) => {}
            _ => failed += 1,
        }
    }
    (sent, failed)
}

pub fn print(result: &FanoutResult) {
    eprintln!(
        "sse-fanout: {} streams, {} sends/s for {} s: sent {} (errors {}), events {} (missing {}), \
         send→event p50 {:.1} ms p99 {:.1} ms max {:.1} ms; frontend RSS {:.1} → {:.1} MB \
         ({:.1} KB per live stream); idle {}/{} held, {:.1} KB per idle stream; steal {:.1}%: {}",
        result.streams,
        result.sends_per_s,
        result.duration_s,
        result.sent,
        result.send_errors,
        result.events,
        result.missing_events,
        result.p50_ms,
        result.p99_ms,
        result.max_ms,
        result.frontend_rss_base_mb,
        result.frontend_rss_open_mb,
        result.frontend_kb_per_stream,
        result.idle_streams_held,
        result.idle_streams_wanted,
        result.frontend_kb_per_idle_stream,
        result.steal_pct,
        result.verdict,
    );
}
