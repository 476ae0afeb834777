//! Test harness: a real `redis-server` and the real service binaries, each on ports it chose
//! itself and reported back, killed when their guard drops. Nothing is mocked.
//!
//! The services run as binaries of this package (`test-user-service`, …, built from each
//! service's own `main.rs`; see Cargo.toml), which cargo builds before running the tests.

mod process;
mod redis_server;
mod stack;

pub use process::{BoundPorts, ServiceProcess};
pub use redis_server::RedisServer;
pub use stack::{Ports, Stack, reply, unique_email};
