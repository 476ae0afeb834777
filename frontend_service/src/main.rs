//! frontend-service: receives the notifications notification-service pushes.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init();
    let config = frontend_service::Config::from_env()?;
    frontend_service::build(config)
        .await?
        .run_until_stopped()
        .await
}
