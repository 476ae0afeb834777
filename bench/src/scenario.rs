//! Closed-loop workers: each sends a request, waits for the reply, sends the next.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use proto::{
    frontend_service::{
        Notification, WatchNotificationsRequest, frontend_service_client::FrontendServiceClient,
    },
    message_service::{
        GetMessagesRequest, Message, SendMessageRequest,
        message_service_client::MessageServiceClient,
    },
    notification_service::{
        ListNotificationsRequest, notification_service_client::NotificationServiceClient,
    },
    user_service::{
        AuthenticateRequest, CheckUserExistsRequest, user_service_client::UserServiceClient,
    },
};
use reqwest::StatusCode;
use tokio::{task::JoinSet, time::Instant};
use tonic::{Streaming, transport::Channel};

use crate::{
    cli::{Endpoints, RunArgs, Scenario},
    clients::Clients,
    procstat::{self, Watched},
    seed::{self, FIXED_ITEMS, FIXED_USER, ListReply, PAGE_LIMIT, PAGE_USER, PASSWORD},
    stats::{Outcome, ProcessUsage, RunResult, Tally, WriterLoad},
};

/// After a transport failure a worker pauses this long, so a dead service is not spun on.
const FAILURE_PAUSE: Duration = Duration::from_millis(10);

/// Runs `args.scenario` and measures it.
pub async fn run(
    clients: &Clients,
    endpoints: &Endpoints,
    args: &RunArgs,
) -> anyhow::Result<RunResult> {
    let watched = procstat::watched(endpoints, &args.pids)?;
    let tag = run_tag();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup.max(0.0));
    let end = measure_from + Duration::from_secs_f64(args.duration.max(0.1));

    let (kind, writers) = match args.scenario {
        Scenario::Mixed => (Scenario::CheckUserExists, args.writers),
        Scenario::LoginUnderSignups => (Scenario::Login, 0),
        other => (other, 0),
    };
    let signups = (args.scenario == Scenario::LoginUnderSignups).then(|| {
        tokio::spawn(open_loop_signups(
            clients.http.clone(),
            format!("{}/users", clients.user_http),
            tag.clone(),
            args.signups_per_second,
            measure_from,
            end,
        ))
    });
    let mut measured = JoinSet::new();
    for index in 0..args.concurrency.max(1) {
        let worker = Worker::new(kind, index, clients, endpoints.users, &tag);
        measured.spawn(worker.run(measure_from, end));
    }
    let mut background = JoinSet::new();
    for index in 0..writers {
        let worker = Worker::new(
            Scenario::CreateUser,
            args.concurrency + index,
            clients,
            endpoints.users,
            &tag,
        );
        background.spawn(worker.run(measure_from, end));
    }

    let sampler = tokio::spawn(sample_rss(watched.clone(), end));
    tokio::time::sleep_until(measure_from).await;
    let cpu_before: Vec<Option<f64>> = watched
        .iter()
        .map(|w| procstat::cpu_seconds(w.pid))
        .collect();
    let steal_before = procstat::steal_seconds();
    tokio::time::sleep_until(end).await;
    let cpu_after: Vec<Option<f64>> = watched
        .iter()
        .map(|w| procstat::cpu_seconds(w.pid))
        .collect();
    let steal_after = procstat::steal_seconds();
    let measured_s = (end - measure_from).as_secs_f64();

    let tally = join(measured).await?;
    let mut writer_tally = join(background).await?;
    if let Some(signups) = signups {
        writer_tally.merge(&signups.await.context("the sign-up load")?);
    }
    let rss_peaks = sampler.await.context("RSS sampler")?;

    let processes: Vec<ProcessUsage> = watched
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let cpu_s = match (cpu_before[i], cpu_after[i]) {
                (Some(before), Some(after)) => after - before,
                _ => 0.0,
            };
            ProcessUsage {
                name: w.name.clone(),
                pid: w.pid,
                cpu_s,
                cpu_pct: 100.0 * cpu_s / measured_s,
                rss_peak_mb: rss_peaks[i],
                hwm_mb: procstat::status_mb(w.pid, "VmHWM").unwrap_or(0.0),
            }
        })
        .collect();
    let service_cpu: f64 = processes
        .iter()
        .filter(|p| p.name.ends_with("-service"))
        .map(|p| p.cpu_s)
        .fold(0.0, |sum, cpu| sum + cpu);
    let requests = tally.requests();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let steal_s = (steal_after - steal_before).max(0.0);
    Ok(RunResult {
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        session: args.session.clone(),
        scenario: args.scenario.name().to_owned(),
        concurrency: args.concurrency.max(1),
        duration_s: measured_s,
        warmup_s: args.warmup,
        requests,
        rps: requests as f64 / measured_s,
        p50_ms: tally.quantile_ms(0.50),
        p90_ms: tally.quantile_ms(0.90),
        p99_ms: tally.quantile_ms(0.99),
        max_ms: tally.max_ms(),
        mean_ms: tally.latency_us.mean() / 1000.0,
        business_errors: tally.business,
        transport_errors: tally.transport,
        service_cpu_us_per_req: if requests == 0 {
            0.0
        } else {
            1e6 * service_cpu / requests as f64
        },
        steal_s,
        steal_pct: 100.0 * steal_s / (cpus * measured_s),
        processes,
        writers: (writers > 0 || args.scenario == Scenario::LoginUnderSignups).then(|| {
            WriterLoad {
                workers: writers,
                offered_per_s: (args.scenario == Scenario::LoginUnderSignups)
                    .then_some(args.signups_per_second),
                requests: writer_tally.requests(),
                rps: writer_tally.requests() as f64 / measured_s,
                p99_ms: writer_tally.quantile_ms(0.99),
                business_errors: writer_tally.business,
                transport_errors: writer_tally.transport,
            }
        }),
    })
}

async fn join(mut set: JoinSet<Tally>) -> anyhow::Result<Tally> {
    let mut total = Tally::new();
    while let Some(tally) = set.join_next().await {
        total.merge(&tally.context("a worker panicked")?);
    }
    Ok(total)
}

/// The largest VmRSS of each process, sampled every 100 ms until `end`.
async fn sample_rss(watched: Vec<Watched>, end: Instant) -> Vec<f64> {
    let mut peaks = vec![0.0_f64; watched.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        for (peak, w) in peaks.iter_mut().zip(&watched) {
            if let Some(rss) = procstat::status_mb(w.pid, "VmRSS") {
                *peak = peak.max(rss);
            }
        }
        if Instant::now() >= end {
            return peaks;
        }
    }
}

/// Unique per run, so create-user never repeats an email of an earlier run.
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{:x}", std::process::id(), nanos % (1 << 48))
}

/// One closed-loop worker and everything its requests need, prepared up front.
struct Worker {
    kind: Scenario,
    index: usize,
    rng: u64,
    seq: u64,
    users: usize,
    tag: Arc<str>,
    user: UserServiceClient<Channel>,
    message: MessageServiceClient<Channel>,
    notification: NotificationServiceClient<Channel>,
    frontend: FrontendServiceClient<Channel>,
    /// send-to-watch: the worker's receiver's live stream, opened on first use.
    watch: Option<Streaming<Notification>>,
    http: reqwest::Client,
    /// The one URL this worker requests (HTTP scenarios).
    url: String,
    user_emails: Arc<[String]>,
}

impl Worker {
    fn new(kind: Scenario, index: usize, clients: &Clients, users: usize, tag: &str) -> Self {
        let url = match kind {
            Scenario::ListConversations => {
                format!(
                    "{}/list_conversations?email={FIXED_USER}",
                    clients.message_http
                )
            }
            Scenario::ListNotifications => format!(
                "{}/list_notifications?email={FIXED_USER}",
                clients.notification_http
            ),
            Scenario::ListNotificationsPage => format!(
                "{}/list_notifications?email={PAGE_USER}&limit={PAGE_LIMIT}",
                clients.notification_http
            ),
            Scenario::CreateUser => format!("{}/users", clients.user_http),
            Scenario::Login | Scenario::LoginUnderSignups => format!("{}/login", clients.user_http),
            _ => String::new(),
        };
        let users = users.max(2);
        Self {
            kind,
            index,
            // Any odd non-zero seed; distinct per worker.
            rng: 0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) << 17),
            seq: 0,
            users,
            tag: tag.into(),
            user: clients.user(index),
            message: clients.message(index),
            notification: clients.notification(index),
            frontend: clients.frontend(index),
            watch: None,
            http: clients.http.clone(),
            url,
            user_emails: (0..users).map(seed::user_email).collect(),
        }
    }

    async fn run(mut self, measure_from: Instant, end: Instant) -> Tally {
        let mut tally = Tally::new();
        loop {
            let sent = Instant::now();
            if sent >= end {
                return tally;
            }
            let outcome = self.once().await;
            let done = Instant::now();
            // Counted when the reply lands inside the measured window.
            if done >= measure_from && done <= end {
                let micros = u64::try_from((done - sent).as_micros()).unwrap_or(u64::MAX);
                tally.record(outcome, micros);
            }
            if outcome == Outcome::Transport {
                tokio::time::sleep(FAILURE_PAUSE).await;
            }
        }
    }

    /// xorshift64: cheap, and good enough to spread requests over the users.
    fn next_random(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng as usize
    }

    fn random_user(&mut self) -> String {
        let i = self.next_random() % self.users;
        self.user_emails[i].clone()
    }

    async fn once(&mut self) -> Outcome {
        match self.kind {
            Scenario::CheckUserExists | Scenario::Mixed => {
                let email = self.random_user();
                let reply = self
                    .user
                    .check_user_exists(CheckUserExistsRequest { email: Some(email) })
                    .await;
                grpc(reply, |r| r.exists == Some(true))
            }
            Scenario::Authenticate => {
                let email = self.random_user();
                let reply = self
                    .user
                    .authenticate_user(AuthenticateRequest {
                        email: Some(email),
                        password: Some(PASSWORD.to_owned()),
                    })
                    .await;
                grpc(reply, |r| r.success == Some(true))
            }
            Scenario::SendMessage => {
                let sender = self.next_random() % self.users;
                // Any other user: an offset in 1..users never lands on the sender.
                let receiver = (sender + 1 + self.next_random() % (self.users - 1)) % self.users;
                self.seq += 1;
                let request = SendMessageRequest {
                    message: Some(Message {
                        sender_email: Some(self.user_emails[sender].clone()),
                        receiver_email: Some(self.user_emails[receiver].clone()),
                        content: Some(format!("bench {} {} {}", self.tag, self.index, self.seq)),
                        ..Message::default()
                    }),
                    idempotency_key: None,
                };
                let reply = self.message.send_message(request).await;
                grpc(reply, |r| r.success == Some(true))
            }
            Scenario::GetMessages => {
                let reply = self
                    .message
                    .get_messages(GetMessagesRequest {
                        user_email: Some(FIXED_USER.to_owned()),
                        ..GetMessagesRequest::default()
                    })
                    .await;
                grpc(reply, |r| r.messages.len() == FIXED_ITEMS)
            }
            Scenario::ListConversations => {
                let reply = self.http.get(&self.url).send().await;
                http_list(reply, |r| r.conversations.len() == FIXED_ITEMS).await
            }
            Scenario::ListNotifications => {
                let reply = self.http.get(&self.url).send().await;
                http_list(reply, |r| r.notifications.len() == FIXED_ITEMS).await
            }
            Scenario::ListNotificationsPage => {
                let reply = self.http.get(&self.url).send().await;
                http_list(reply, |r| r.notifications.len() == PAGE_LIMIT).await
            }
            Scenario::SendToWatch => self.send_to_watch().await,
            Scenario::Login | Scenario::LoginUnderSignups => {
                let email = self.random_user();
                let body = serde_json::json!({ "email": email, "password": PASSWORD });
                http_status(
                    self.http.post(&self.url).json(&body).send().await,
                    StatusCode::OK,
                )
                .await
            }
            Scenario::CreateUser => {
                self.seq += 1;
                let email = format!(
                    "bench-new-{}-{}-{}@bench.example.com",
                    self.tag, self.index, self.seq
                );
                let body =
                    serde_json::json!({ "email": email, "password": PASSWORD, "name": "Bench" });
                match self.http.post(&self.url).json(&body).send().await {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        // Drain the body so the connection goes back to the pool.
                        match response.bytes().await {
                            Ok(_) => Outcome::Ok,
                            Err(_) => Outcome::Transport,
                        }
                    }
                    Ok(response) => {
                        let _ = response.bytes().await;
                        Outcome::Business
                    }
                    Err(_) => Outcome::Transport,
                }
            }
        }
    }
}

impl Worker {
    /// One message to this worker's receiver, answered when its notification arrives on the
    /// receiver's watch stream (the stream is opened once, after the receiver's newest cursor).
    async fn send_to_watch(&mut self) -> Outcome {
        let receiver = self.user_emails[self.index % self.users].clone();
        let sender = self.user_emails[(self.index + 1) % self.users].clone();
        if self.watch.is_none() {
            match self.open_watch(&receiver).await {
                Some(stream) => self.watch = Some(stream),
                None => return Outcome::Transport,
            }
        }
        self.seq += 1;
        let request = SendMessageRequest {
            message: Some(Message {
                sender_email: Some(sender.clone()),
                receiver_email: Some(receiver),
                content: Some(format!("watch {} {} {}", self.tag, self.index, self.seq)),
                ..Message::default()
            }),
            idempotency_key: None,
        };
        match self.message.send_message(request).await {
            Ok(reply) if reply.get_ref().success == Some(true) => {}
            Ok(_) => return Outcome::Business,
            Err(_) => return Outcome::Transport,
        }
        let Some(stream) = self.watch.as_mut() else {
            return Outcome::Transport;
        };
        match tokio::time::timeout(crate::clients::REQUEST_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(notification))) if notification.sender_email.as_deref() == Some(&sender) => {
                Outcome::Ok
            }
            Ok(Ok(Some(_))) => Outcome::Business,
            _ => {
                self.watch = None;
                Outcome::Transport
            }
        }
    }

    async fn open_watch(&mut self, receiver: &str) -> Option<Streaming<Notification>> {
        let newest = self
            .notification
            .list_notifications(ListNotificationsRequest {
                email: Some(receiver.to_owned()),
                limit: Some(1),
                ..ListNotificationsRequest::default()
            })
            .await
            .ok()?
            .into_inner()
            .notifications
            .first()
            .and_then(|newest| newest.cursor);
        let request = WatchNotificationsRequest {
            email: Some(receiver.to_owned()),
            after: Some(newest.unwrap_or(0)),
        };
        Some(
            self.frontend
                .watch_notifications(request)
                .await
                .ok()?
                .into_inner(),
        )
    }
}

/// [`Outcome::Ok`] for a reply of `expected` status (its body drained, so the connection
/// goes back to the pool), [`Outcome::Business`] for another status.
async fn http_status(
    reply: Result<reqwest::Response, reqwest::Error>,
    expected: StatusCode,
) -> Outcome {
    match reply {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Ok(_) if status == expected => Outcome::Ok,
                Ok(_) => Outcome::Business,
                Err(_) => Outcome::Transport,
            }
        }
        Err(_) => Outcome::Transport,
    }
}

/// `per_second` sign-ups with new emails, each sent on its own schedule whatever became of the
/// earlier ones (open loop), until `end`; tallied like a worker's (201 ok, any other status a
/// business error), counted when the reply lands inside the measured window.
async fn open_loop_signups(
    http: reqwest::Client,
    url: String,
    tag: String,
    per_second: f64,
    measure_from: Instant,
    end: Instant,
) -> Tally {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(0.1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = JoinSet::new();
    for seq in 0_u64.. {
        tick.tick().await;
        let started = Instant::now();
        if started >= end {
            break;
        }
        let request = http.post(&url).json(&serde_json::json!({
            "email": format!("bench-signup-{tag}-{seq}@bench.example.com"),
            "password": PASSWORD,
            "name": "Bench",
        }));
        sent.spawn(async move {
            let outcome = http_status(request.send().await, StatusCode::CREATED).await;
            (outcome, started, Instant::now())
        });
    }
    let mut tally = Tally::new();
    while let Some(done) = sent.join_next().await {
        let Ok((outcome, started, done)) = done else {
            continue;
        };
        if done >= measure_from && done <= end {
            let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
            tally.record(outcome, micros);
        }
    }
    tally
}

fn grpc<T>(reply: Result<tonic::Response<T>, tonic::Status>, ok: impl Fn(&T) -> bool) -> Outcome {
    match reply {
        Ok(reply) if ok(reply.get_ref()) => Outcome::Ok,
        Ok(_) => Outcome::Business,
        Err(_) => Outcome::Transport,
    }
}

async fn http_list(
    reply: reqwest::Result<reqwest::Response>,
    ok: impl Fn(&ListReply) -> bool,
) -> Outcome {
    let response = match reply {
        Ok(response) => response,
        Err(_) => return Outcome::Transport,
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(_) => return Outcome::Transport,
    };
    if status != StatusCode::OK {
        return Outcome::Business;
    }
    match serde_json::from_slice::<ListReply>(&body) {
        Ok(reply) if reply.success && ok(&reply) => Outcome::Ok,
        _ => Outcome::Business,
    }
}
