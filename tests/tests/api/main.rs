//! The integration suite: one test binary, one module per area.

mod authedge;
mod edges;
mod faults;
mod hardening;
mod hostile;
mod inbox;
mod lifecycle;
mod messaging;
mod notifications;
mod observability;
mod privilege;
mod runtime;
mod security;
mod users;
mod webinbox;
mod websession;
