//! message-service: sends and lists messages between users.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init();
    let config = message_service::Config::from_env()?;
    message_service::build(config)
        .await?
        .run_until_stopped()
        .await
}
