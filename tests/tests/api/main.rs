//! The integration suite: one test binary, one module per area.

mod faults;
mod hostile;
mod messaging;
mod notifications;
mod runtime;
mod security;
mod users;
