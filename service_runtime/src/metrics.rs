//! Prometheus metrics: one process-wide recorder (`metrics` + `metrics-exporter-prometheus`)
//! rendered by `GET /metrics` on the service's HTTP port, the metric families every service
//! shares, and the functions that record them.
//!
//! Label values are always bounded: HTTP routes are axum's route templates (never a raw path,
//! which would carry emails), methods and codes come from fixed lists, streams and peers are
//! names written in the code. Every histogram is a Prometheus histogram with
//! [`LATENCY_BUCKETS`], so quantiles can be aggregated across replicas.

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Upper bounds (seconds) of the latency buckets: from a Redis read (sub-millisecond) to an
/// argon2 hash under load (hundreds of milliseconds) and a peer's call deadline (3 s).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The label of a request no route matched (its path is the client's, so never a label).
pub const UNMATCHED: &str = "unmatched";

/// How often recorded histogram samples are folded into their buckets when nobody scrapes;
/// until then they are held in memory one by one.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The `Content-Type` of the Prometheus text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Recorder {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

static RECORDER: OnceLock<Recorder> = OnceLock::new();

/// Installs the process-wide recorder and describes the shared metric families; later calls
/// do nothing. Metrics recorded before this are lost, so it runs when a service is described
/// ([`crate::server::ServiceBuilder::new`]).
pub fn install() {
    recorder();
}

fn recorder() -> &'static Recorder {
    RECORDER.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("the latency buckets are not empty");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Only this function installs one, once; should another library have done it,
            // serve an empty registry rather than fail the service.
            Err(err) => {
                tracing::error!(error = %err, "cannot install the metrics recorder; /metrics stays empty");
                PrometheusBuilder::new().build_recorder().handle()
            }
        };
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(error = %err, "no metrics upkeep thread; histograms are folded at scrape time only");
        }
        let process = metrics_process::Collector::default();
        process.describe();
        describe();
        Recorder { handle, process }
    })
}

fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by route template, method and status code."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving an HTTP request to its response head, by route template and method."
    );
    describe_counter!(
        "grpc_requests_total",
        "gRPC calls answered, by full method name and status code."
    );
    describe_histogram!(
        "grpc_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving a gRPC call to its response head (for a server stream: until it opened), by method."
    );
    describe_counter!(
        "grpc_client_requests_total",
        "Outbound gRPC calls, by peer service, full method name and status code (transport failures included)."
    );
    describe_histogram!(
        "grpc_client_request_duration_seconds",
        Unit::Seconds,
        "Time an outbound gRPC call took until the peer's response head or the failure, by peer and method."
    );
    describe_gauge!(
        "outbox_pending_entries",
        "Entries in an outbox stream not yet delivered to the peer (XLEN, sampled by its worker)."
    );
    describe_counter!(
        "outbox_deliveries_total",
        "Delivery attempts of outbox entries, by stream, path (inline in the request, or by the worker) and outcome."
    );
    describe_counter!(
        "outbox_dead_letters_total",
        "Outbox entries moved to their stream's dead-letter stream (`<stream>:dead`) after the peer refused them again and again, by stream."
    );
    describe_counter!(
        "outbox_claimed_entries_total",
        "Outbox entries this worker took over from a consumer that stopped touching them (a crashed replica), by stream."
    );
    describe_counter!(
        "redis_errors_total",
        "Redis commands and scripts that failed after their retries, and failed rounds of an outbox worker."
    );
}

/// `GET /metrics`: every metric of this process in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Every metric of this process, Prometheus text format 0.0.4",
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String,
    ))
)]
pub async fn render() -> Response {
    let recorder = recorder();
    recorder.process.collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        recorder.handle.render(),
    )
        .into_response()
}

/// One answered HTTP request. `route` is the matched route template or [`UNMATCHED`].
pub(crate) fn http_request(route: &str, method: &axum::http::Method, status: u16, took: Instant) {
    let route = route.to_owned();
    let method = http_method(method);
    metrics::histogram!(
        "http_request_duration_seconds",
        "route" => route.clone(),
        "method" => method,
    )
    .record(took.elapsed());
    counter!(
        "http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status.to_string(),
    )
    .increment(1);
}

/// A method label from a fixed list: any other method a client invents is `OTHER`.
fn http_method(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// One answered gRPC call. A path the server does not serve is answered `UNIMPLEMENTED` (and
/// none of our handlers answers that), so that code means the path is the client's invention
/// and is recorded as [`UNMATCHED`].
pub(crate) fn grpc_request(path: &str, code: tonic::Code, took: Instant) {
    let method = if code == tonic::Code::Unimplemented {
        UNMATCHED
    } else {
        path
    };
    metrics::histogram!("grpc_request_duration_seconds", "method" => method.to_owned())
        .record(took.elapsed());
    counter!(
        "grpc_requests_total",
        "method" => method.to_owned(),
        "code" => grpc_code(code),
    )
    .increment(1);
}

/// One outbound gRPC call to `peer` (a service name written in the code).
pub(crate) fn grpc_client_request(
    peer: &'static str,
    path: &str,
    code: tonic::Code,
    took: Instant,
) {
    metrics::histogram!(
        "grpc_client_request_duration_seconds",
        "peer" => peer,
        "method" => path.to_owned(),
    )
    .record(took.elapsed());
    counter!(
        "grpc_client_requests_total",
        "peer" => peer,
        "method" => path.to_owned(),
        "code" => grpc_code(code),
    )
    .increment(1);
}

/// The code's name as the gRPC specification writes it (`OK`, `UNAVAILABLE`, ...).
pub fn grpc_code(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Who tried to deliver an outbox entry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeliveryPath {
    /// The request that wrote the entry, right after writing it.
    Inline,
    /// The outbox worker, later.
    Worker,
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum DeliveryOutcome {
    /// The peer took it.
    Delivered,
    /// The peer could not take it now; it will be tried again.
    Retry,
    /// The peer refused it as invalid; tried a few more times, then dead-lettered.
    Rejected,
    /// The inline attempt ran out of time; the worker takes over.
    Timeout,
}

pub(crate) fn outbox_delivery(stream: &'static str, path: DeliveryPath, outcome: DeliveryOutcome) {
    let path = match path {
        DeliveryPath::Inline => "inline",
        DeliveryPath::Worker => "worker",
    };
    let outcome = match outcome {
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::Retry => "retry",
        DeliveryOutcome::Rejected => "rejected",
        DeliveryOutcome::Timeout => "timeout",
    };
    counter!(
        "outbox_deliveries_total",
        "stream" => stream,
        "path" => path,
        "outcome" => outcome,
    )
    .increment(1);
}

/// One entry of `stream` moved to its dead-letter stream.
pub(crate) fn outbox_dead_lettered(stream: &'static str) {
    counter!("outbox_dead_letters_total", "stream" => stream).increment(1);
}

/// `entries` of `stream` taken over from a stopped consumer.
pub(crate) fn outbox_claimed(stream: &'static str, entries: u64) {
    counter!("outbox_claimed_entries_total", "stream" => stream).increment(entries);
}

/// The number of entries an outbox stream holds now.
pub(crate) fn outbox_pending(stream: &'static str, entries: u64) {
    // Precision is lost only past 2^53 entries.
    gauge!("outbox_pending_entries", "stream" => stream).set(entries as f64);
}

pub(crate) fn redis_error() {
    counter!("redis_errors_total").increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invented_http_method_is_not_a_label_value() {
        let invented = axum::http::Method::from_bytes(b"BREW").expect("a valid token");
        assert_eq!(http_method(&invented), "OTHER");
        assert_eq!(http_method(&axum::http::Method::PUT), "PUT");
    }

    #[test]
    fn latency_buckets_ascend() {
        assert!(LATENCY_BUCKETS.windows(2).all(|pair| pair[0] < pair[1]));
    }
}
