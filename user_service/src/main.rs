//! user-service: accounts over REST, authentication and lookups over gRPC.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::telemetry::init();
    let config = user_service::Config::from_env()?;
    user_service::build(config).await?.run_until_stopped().await
}
