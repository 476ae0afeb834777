//! The gRPC side of a service: its generated servers behind their access guard, plus health
//! (following Redis) and reflection, within the configured limits; for browsers, gRPC-Web
//! (HTTP/1.1 or HTTP/2, binary or base64 text) and CORS on the same port.

use std::{future::Future, time::Duration};

use axum::http::{Response, header::HeaderValue};
use tokio::net::TcpListener;
use tonic::{Code, Status, body::Body, service::Routes};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    auth::access::Guard, config::GrpcLimits, connection, cors::CorsPolicy, redis_store::Redis,
    shutdown::Shutdown,
};

/// The gRPC health name that says only "this process serves": for liveness probes.
pub const LIVENESS: &str = "liveness";
/// How often the gRPC health service re-checks the service's Redis.
const HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// What a gRPC server serves.
pub(super) struct Grpc {
    routes: Routes,
    service_names: Vec<&'static str>,
    guard: Guard,
    /// The Redis the service needs: the health service says NOT_SERVING while it is down.
    redis: Option<Redis>,
}

impl Grpc {
    pub(super) fn new(
        routes: Routes,
        service_names: Vec<&'static str>,
        guard: Guard,
        redis: Option<Redis>,
    ) -> Self {
        Self {
            routes,
            service_names,
            guard,
            redis,
        }
    }
}

pub(super) async fn serve_grpc(
    listener: TcpListener,
    grpc: Grpc,
    limits: GrpcLimits,
    cors: CorsPolicy,
    shutdown: Shutdown,
) -> (&'static str, anyhow::Result<()>) {
    let Grpc {
        routes,
        service_names,
        guard,
        redis,
    } = grpc;
    let result = async {
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let health_names: Vec<&str> = std::iter::once("")
            .chain(service_names.iter().copied())
            .collect();
        // Until Redis has answered once, the service cannot do its job.
        let initial = match redis {
            Some(_) => ServingStatus::NotServing,
            None => ServingStatus::Serving,
        };
        for name in &health_names {
            health_reporter.set_service_status(*name, initial).await;
        }
        // "The process is alive and serving gRPC", whatever Redis does: what a liveness probe
        // asks (restarting a service cannot bring Redis back); readiness asks "".
        health_reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        // Advertise only what this server answers: the descriptor set holds all four services.
        let advertised: Vec<&str> = service_names
            .iter()
            .copied()
            .chain(["grpc.health.v1.Health"])
            .collect();
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
        };
        let reflection_v1 = reflection().build_v1()?;
        // Older grpcurl builds only speak the v1alpha reflection protocol.
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let routes = routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let incoming = connection::grpc_incoming(listener, limits);
        let request_timeout = limits.request_timeout;
        // Outermost first. A preflight is answered by `cors`, before anything else; gRPC-Web is
        // turned into gRPC (and its reply back) before telemetry, the status mapping, the
        // deadline and the guard, so they see one kind of call whichever the client spoke.
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .http2_keepalive_interval(Some(limits.keepalive_interval))
            .http2_keepalive_timeout(Some(limits.keepalive_timeout))
            .max_concurrent_streams(limits.max_concurrent_streams)
            .layer(connection::GrpcConnectionLayer)
            .layer(cors)
            .layer(tonic_web::GrpcWebLayer::new())
            .layer(crate::telemetry::GrpcTelemetryLayer)
            .layer(tower::util::MapResponseLayer::new(
                undecodable_request_is_invalid_argument,
            ))
            .layer(tower::util::MapFutureLayer::new(move |reply| {
                answer_within(request_timeout, reply)
            }))
            .layer(guard)
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown.clone().wait());
        let health = async {
            if let Some(redis) = redis {
                report_redis_health(&redis, &health_reporter, &health_names, shutdown).await;
            }
        };
        tokio::pin!(server);
        // The server's end is what counts: the health reporting stops with the shutdown.
        let served = tokio::select! {
            served = &mut server => served,
            () = health => server.await,
        };
        served?;
        anyhow::Ok(())
    }
    .await;
    ("gRPC", result)
}

/// `DEADLINE_EXCEEDED` for a call whose reply has not started within `timeout` (a streamed
/// reply, once started, runs on). A client's shorter `grpc-timeout` is honoured by tonic
/// itself.
async fn answer_within<F, E>(timeout: Duration, reply: F) -> Result<Response<Body>, E>
where
    F: Future<Output = Result<Response<Body>, E>>,
{
    match tokio::time::timeout(timeout, reply).await {
        Ok(reply) => reply,
        Err(_) => Ok(Status::deadline_exceeded(format!(
            "the call was not answered within {timeout:?}"
        ))
        .into_http()),
    }
}

/// How tonic and tonic-web begin the `INTERNAL` status they answer, before any handler runs,
/// to request bytes that are not one whole message of the RPC: not its protobuf, a frame cut
/// short, gRPC-Web text that is not base64.
const UNDECODABLE: [&str; 3] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "tonic-web: ",
];

/// tonic answers a request body that is not the RPC's protobuf message with `INTERNAL`
/// (from the codec, before any handler runs; likewise a frame cut short, and tonic-web a
/// grpc-web body it cannot decode); the contract keeps `INTERNAL` for our own bugs, and bytes
/// the caller got wrong are its invalid argument. The status is in the reply's head (a
/// trailers-only reply), so only the code is rewritten; the message, which says what could not
/// be decoded, stays.
fn undecodable_request_is_invalid_argument(mut reply: Response<Body>) -> Response<Body> {
    let undecodable = Status::from_header_map(reply.headers()).is_some_and(|status| {
        status.code() == Code::Internal
            && UNDECODABLE
                .iter()
                .any(|start| status.message().starts_with(start))
    });
    if undecodable {
        reply.headers_mut().insert(
            "grpc-status",
            HeaderValue::from(Code::InvalidArgument as i32),
        );
    }
    reply
}

/// Keeps the gRPC health of `names` (the server as a whole, "", and each service) in step
/// with whether `redis` answers, checking every [`HEALTH_CHECK_INTERVAL`] until `shutdown`.
async fn report_redis_health(
    redis: &Redis,
    reporter: &HealthReporter,
    names: &[&str],
    shutdown: Shutdown,
) {
    let mut reported = None;
    let mut ticks = tokio::time::interval(HEALTH_CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop = shutdown.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        let status = if redis.is_reachable().await {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported == Some(status) {
            continue;
        }
        match status {
            ServingStatus::Serving => tracing::info!("Redis answers; gRPC health is SERVING"),
            _ => tracing::warn!("Redis does not answer; gRPC health is NOT_SERVING"),
        }
        for name in names {
            reporter.set_service_status(*name, status).await;
        }
        reported = Some(status);
    }
}
