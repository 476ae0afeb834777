//! The mechanics every service shares, written once: configuration from the environment,
//! tracing, the Redis connection, serving HTTP and gRPC side by side under one shutdown
//! signal, outbound gRPC channels, JSON request/response helpers, the durable outbox, and the
//! Prometheus metrics and OpenAPI document of every HTTP server.
//!
//! Each service crate keeps only what is its own: its config, its store, its handlers.

pub mod auth;
pub mod config;
mod connection;
pub mod cors;
pub mod email;
pub mod error;
pub mod grpc_client;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod redis_store;
pub mod request_id;
pub mod retry;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod time;
