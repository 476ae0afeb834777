//! The integration suite: one test binary, one module per area.

mod faults;
mod messaging;
mod notifications;
mod observability;
mod runtime;
mod users;
