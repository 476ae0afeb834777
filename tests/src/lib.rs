//! Test harness: a real `redis-server` and the real services, each on ports it chose itself
//! and reported back, stopped when their guard drops. Nothing is mocked.
//!
//! [`helpers`] is what the tests do with the running system: one helper per endpoint and RPC,
//! readers of the stored data, and the one way to wait for something eventual.
//!
//! The services run either in-process ([`Stack::in_process`], see [`in_process`]) or as
//! binaries of this package (`test-user-service`, …, built from each
//! service's own `main.rs`; see Cargo.toml), which cargo builds before running the tests.

pub mod browser;
pub mod helpers;
pub mod in_process;
mod process;
mod redis_server;
pub mod sentinel;
mod stack;

pub use in_process::InProcess;
pub use process::{BoundPorts, ServiceProcess};
pub use redis_server::RedisServer;
pub use stack::{InProcessStack, Ports, Stack};
