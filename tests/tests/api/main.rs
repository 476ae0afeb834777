//! The integration suite: one test binary, one module per area.

mod authedge;
mod cors;
mod edges;
mod failover;
mod faults;
mod grpcweb;
mod hardening;
mod hostile;
mod idempotency;
mod inbox;
mod lifecycle;
mod live;
mod liveauth;
mod messaging;
mod notifications;
mod observability;
mod privilege;
mod runtime;
mod security;
mod topology;
mod users;
mod webinbox;
mod websession;
