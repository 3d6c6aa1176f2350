//! `toktra-agent`: the agent alone, for endpoints — `run` and `status` with the same
//! flags, configuration layering and help as `toktra agent`, whose code it shares. It
//! links none of the server, dashboard or pcap tooling: a smaller file to deploy to
//! thousands of machines and fewer code pages resident in the agent process.

// The very module `toktra agent` uses, not a copy of it.
#[path = "../agent.rs"]
mod agent;

use clap::Parser;
use std::process::ExitCode;

/// The Toktra agent: observes which LLM services this machine connects to, from
/// connection metadata alone (it never reads prompts or responses and never decrypts
/// TLS), and reports them to a Toktra server. Without a subcommand it runs.
#[derive(Parser)]
#[command(name = "toktra-agent", version)]
struct Cli {
    #[command(flatten)]
    agent: agent::Args,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match agent::run(cli.agent) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toktra-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
