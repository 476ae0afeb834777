//! The integration suite: one test binary, one module per area.

mod authedge;
mod faults;
mod hardening;
mod hostile;
mod inbox;
mod messaging;
mod notifications;
mod observability;
mod runtime;
mod security;
mod users;
