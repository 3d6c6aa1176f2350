//! `toktra`: the one Linux command line. Each subcommand lives in its own module.

mod admin;
mod agent;
mod pcap;
mod server;
mod up;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Toktra shows which LLM tools an organization uses, how much, and what it costs —
/// from connection metadata alone. It never reads prompts or responses and never
/// decrypts TLS.
#[derive(Parser)]
#[command(name = "toktra", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine: the server on SQLite, an enrolled local agent
    /// and the dashboard.
    Up(up::Args),
    /// Run the backend: enrollment CA, mTLS ingest, usage API and dashboard.
    Server(server::Args),
    /// Run or inspect the Linux agent.
    Agent(agent::Args),
    /// Administer a server: organizations, tokens, API keys, devices, budgets.
    Admin(admin::Args),
    /// Read pcap/pcapng files and print one JSON line per TLS or QUIC flow.
    Pcap(pcap::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(a) => up::run(a),
        Command::Server(a) => server::run(a),
        Command::Agent(a) => agent::run(a),
        Command::Admin(a) => admin::run(a),
        Command::Pcap(a) => pcap::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("toktra: {e:#}");
            ExitCode::FAILURE
        }
    }
}
