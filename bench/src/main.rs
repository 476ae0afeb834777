//! bench: a closed-loop load generator for the running stack, over its real ports.
//!
//! `bench setup` seeds users and fixed data through the public APIs; `bench run <scenario>`
//! measures one scenario; `bench fanout` measures the SSE live feed's fan-out; `bench report` summarises the JSON lines of several runs.
//! `scripts/bench` starts a private stack and drives all of it.

mod cli;
mod clients;
mod fanout;
mod procstat;
mod report;
mod scenario;
mod seed;
mod stats;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Setup => {
            let clients = clients::Clients::new(&cli.endpoints)?;
            seed::setup(&clients, cli.endpoints.users).await
        }
        cli::Command::Run(args) => {
            let clients = clients::Clients::new(&cli.endpoints)?;
            let result = scenario::run(&clients, &cli.endpoints, &args).await?;
            report::print_run(&result)?;
            if let Some(path) = &args.json {
                report::append_json(path, &result)?;
            }
            Ok(())
        }
        cli::Command::Fanout(args) => {
            let clients = clients::Clients::new(&cli.endpoints)?;
            let result = fanout::run(&clients, &cli.endpoints, &args).await?;
            fanout::print(&result);
            if let Some(path) = &args.json {
                report::append_json(path, &result)?;
            }
            Ok(())
        }
        cli::Command::Report { file, session } => report::summarise(&file, session.as_deref()),
    }
}
