//! Command line: where the stack is, and what to run against it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    version,
    about = "Closed-loop load generator for the running stack"
)]
pub struct Cli {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the services listen; the defaults are the contract's ports.
#[derive(Debug, Clone, Args)]
pub struct Endpoints {
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, global = true, default_value_t = 8080)]
    pub user_http: u16,
    #[arg(long, global = true, default_value_t = 9797)]
    pub user_grpc: u16,
    #[arg(long, global = true, default_value_t = 8181)]
    pub message_http: u16,
    #[arg(long, global = true, default_value_t = 9696)]
    pub message_grpc: u16,
    #[arg(long, global = true, default_value_t = 8282)]
    pub notification_http: u16,
    #[arg(long, global = true, default_value_t = 9898)]
    pub notification_grpc: u16,
    #[arg(long, global = true, default_value_t = 3030)]
    pub frontend_grpc: u16,
    /// frontend-service's HTTP port (`/live`, the SSE feed).
    #[arg(long, global = true, default_value_t = 3031)]
    pub frontend_http: u16,
    /// HTTP/2 connections per gRPC target, used round-robin by the workers (one connection
    /// multiplexes everything, but a few avoid head-of-line blocking on one socket).
    #[arg(long, global = true, default_value_t = 4)]
    pub channels: usize,
    /// How many seeded users `setup` creates and the scenarios pick from.
    #[arg(long, global = true, default_value_t = 32)]
    pub users: usize,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Creates the bench users and the fixed seed data through the real APIs; idempotent.
    Setup,
    /// Runs one scenario and prints its row (and appends it to `--json`).
    Run(RunArgs),
    /// sse-fanout: `--streams` open `/live` streams while `--rate` messages a second arrive,
    /// then `--idle-streams` more held idle; prints its row (and appends it to `--json`).
    Fanout(FanoutArgs),
    /// Prints the median of every (scenario, concurrency) in a JSON-lines file.
    Report {
        /// The file `run --json` appended to.
        file: PathBuf,
        /// Only rows of this session (`run --session`).
        #[arg(long)]
        session: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub scenario: Scenario,
    /// Closed-loop workers, each sending its next request when the previous reply arrives.
    #[arg(long, short = 'c', default_value_t = 1)]
    pub concurrency: usize,
    /// Measured seconds.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds run before measuring, not counted.
    #[arg(long, short = 'w', default_value_t = 2.0)]
    pub warmup: f64,
    /// Appends one JSON object for this run to the file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A label stored with the run, so `report --session` can pick one series of runs.
    #[arg(long)]
    pub session: Option<String>,
    /// Processes to sample, `name=pid,...`. Default: the services found by their listening
    /// gRPC port.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<String>,
    /// `mixed` only: workers creating users at full speed next to the measured ones.
    #[arg(long, default_value_t = 4)]
    pub writers: usize,
    /// `login-under-signups` only: sign-ups attempted a second next to the measured logins,
    /// each sent on time whether the earlier ones were answered or not (open loop).
    #[arg(long, default_value_t = 200.0)]
    pub signups_per_second: f64,
}

#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Open streams, one per seeded receiver (`--users` must be larger: one more sends).
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Messages sent a second, on their own schedule (open loop), round-robin over receivers.
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,
    /// Measured seconds of sending.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds sent before measuring, not counted.
    #[arg(long, short = 'w', default_value_t = 2.0)]
    pub warmup: f64,
    /// Streams opened afterwards to addresses that get nothing, to see them held and weighed.
    #[arg(long, default_value_t = 10_000)]
    pub idle_streams: usize,
    /// Processes, `name=pid,...` (frontend-service's is the one weighed). Default: found by port.
    #[arg(long, value_delimiter = ',')]
    pub pids: Vec<String>,
    /// Appends one JSON object for this run to the file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// A label stored with the run.
    #[arg(long)]
    pub session: Option<String>,
}

/// What one worker does in a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// message-service gRPC SendMessage between random pairs of seeded users (end to end:
    /// user-service checks, storage, notification, push to frontend).
    SendMessage,
    /// user-service gRPC CheckUserExists on seeded users.
    CheckUserExists,
    /// user-service gRPC AuthenticateUser with the right password (argon2 verify).
    Authenticate,
    /// message-service gRPC GetMessages of the fixed user (exactly 8 messages).
    GetMessages,
    /// message-service HTTP GET /list_conversations of the fixed user (exactly 8).
    ListConversations,
    /// notification-service HTTP GET /list_notifications of the fixed user (exactly 8).
    ListNotifications,
    /// notification-service HTTP GET /list_notifications?limit=20 of a user with 1,000 stored.
    ListNotificationsPage,
    /// SendMessage to the worker's own receiver, timed until the notification arrives on that
    /// receiver's WatchNotifications stream (needs `--users` ≥ concurrency + 1).
    SendToWatch,
    /// user-service HTTP POST /users with unique emails (argon2 hash).
    CreateUser,
    /// create-user at full speed in `--writers` workers; check-user-exists measured in the
    /// `--concurrency` others.
    Mixed,
    /// user-service HTTP POST /login of seeded users (argon2 verify).
    Login,
    /// login measured while `--signups-per-second` POST /users are attempted (open loop).
    LoginUnderSignups,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Self::SendMessage => "send-message",
            Self::CheckUserExists => "check-user-exists",
            Self::Authenticate => "authenticate",
            Self::GetMessages => "get-messages",
            Self::ListConversations => "list-conversations",
            Self::ListNotifications => "list-notifications",
            Self::ListNotificationsPage => "list-notifications-page",
            Self::SendToWatch => "send-to-watch",
            Self::CreateUser => "create-user",
            Self::Mixed => "mixed",
            Self::Login => "login",
            Self::LoginUnderSignups => "login-under-signups",
        }
    }
}
