//! notification-service: subscriptions, stored notifications, pushes to frontend-service.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init();
    let config = notification_service::Config::from_env()?;
    notification_service::build(config)
        .await?
        .run_until_stopped()
        .await
}
