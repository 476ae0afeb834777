//! Test harness: a real `redis-server` and the real service binaries, each on free ports,
//! killed when their guard drops. Nothing is mocked.
//!
//! The binaries are the ones `cargo test --workspace` builds next to the test executable;
//! `cargo build --workspace` first if you run this crate's tests alone.

mod process;
mod redis_server;
mod stack;

pub use process::ServiceProcess;
pub use redis_server::RedisServer;
pub use stack::{Ports, Stack, free_port, reply, unique_email};
