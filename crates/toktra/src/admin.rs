//! `toktra admin`. Placeholder until its issue lands; owned by that work.

use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`toktra admin` is not built yet")
}
