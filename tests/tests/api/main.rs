//! The integration suite: one test binary, one module per area.

mod runtime;
mod users;
