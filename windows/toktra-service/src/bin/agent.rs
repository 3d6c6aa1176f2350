//! ToktraAgent.exe: the Toktra agent as a Windows service, and its administration.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use toktra_service::protocol::Op;
use toktra_service::{config, logging, pipe, scm, service};

#[derive(Parser)]
#[command(
    name = "ToktraAgent",
    version,
    about = "Toktra Agent: reports which LLM tools are used on this device, from connection metadata only.",
    long_about = "Toktra Agent: reports which LLM tools are used on this device, from connection \
metadata only (it never decrypts or blocks traffic).\n\n\
Configuration lives in HKLM\\SOFTWARE\\Toktra\\Agent and is read at every service start: \
IngestUrl (REG_SZ, default https://ingest.toktra.io), OrgId (REG_SZ, required), DeviceId \
(REG_SZ, generated and stored if empty), CertSubject (REG_SZ, default \"Toktra Device\"), \
LogLevel (REG_DWORD 0=Error 1=Warn 2=Info 3=Debug, default 2), EnrollToken (REG_SZ), and, \
Windows only, ServerCaFile (REG_SZ, PEM of a private CA that signed the server's TLS \
certificate) and DashboardUrl (REG_SZ, default IngestUrl).\n\n\
Logs: %ProgramData%\\Toktra\\Agent\\logs\\agent.log.YYYY-MM-DD (daily, 14 kept); start, stop \
and errors also go to the Application event log, source ToktraAgent."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Register the ToktraAgent service (automatic, delayed start; restart on failure;
    /// service SID), the Event Log source, the tray's logon Run key and the Edge/Chrome
    /// native messaging host. Run as Administrator from the install directory.
    Install {
        /// Browser extension id allowed to talk to the native messaging host (repeat
        /// for several).
        #[arg(long = "extension-id", value_name = "ID")]
        extension_ids: Vec<String>,
    },
    /// Stop and remove the service and what `install` registered. Configuration,
    /// certificate and data stay.
    Uninstall,
    /// Run the agent in this console (Ctrl-C stops it) instead of as a service.
    Run,
    /// Show the service state and, when it runs, its status.
    Status {
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Entry point for the Service Control Manager.
    #[command(hide = true)]
    Service,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Service => service::dispatch().context(
            "this command is for the Service Control Manager; use `ToktraAgent.exe run` in a console",
        ),
        Command::Install { extension_ids } => {
            let exe = std::env::current_exe().context("locating ToktraAgent.exe")?;
            scm::install(&exe, &extension_ids)?;
            Ok(())
        }
        Command::Uninstall => scm::uninstall(),
        Command::Run => {
            let cfg = config::load()?;
            logging::init_console(cfg.log_level);
            let (tx, rx) = tokio::sync::watch::channel(false);
            let ctrl_c = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            std::thread::spawn(move || {
                ctrl_c.block_on(async {
                    let _ = tokio::signal::ctrl_c().await;
                });
                let _ = tx.send(true);
            });
            match service::run_until_stopped(cfg, rx) {
                windows_service::service::ServiceExitCode::Win32(0) => Ok(()),
                other => anyhow::bail!("the agent stopped with {other:?}; see the log above"),
            }
        }
        Command::Status { json } => status(json),
    }
}

fn status(json: bool) -> anyhow::Result<()> {
    let state = scm::query_state()?;
    let live = pipe::Client::connect(Duration::from_secs(2))
        .and_then(|mut c| c.call(Op::Status))
        .ok()
        .and_then(|r| r.status);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "service": state.map(|s| format!("{s:?}")),
                "status": live,
            })
        );
    } else {
        match state {
            None => println!("service: not installed"),
            Some(s) => println!("service: {s:?}"),
        }
        if let Some(st) = &live {
            println!("version: {}", st.version);
            println!("org: {}  device: {}", st.org_id, st.device_id);
            println!("ingest: {}", st.ingest_url);
            println!(
                "enrolled: {}{}",
                if st.enrolled { "yes" } else { "no" },
                st.cert_not_after
                    .as_deref()
                    .map(|t| format!(" (certificate valid until {t})"))
                    .unwrap_or_default()
            );
            println!("driver: {:?} ({} events)", st.driver, st.driver_events);
            println!("extension events: {}", st.extension_events);
            println!(
                "spool: {} events waiting, {} uploaded",
                st.spool_events, st.uploaded_events
            );
            if let Some(t) = &st.last_upload {
                println!("last upload: {t}");
            }
            if let Some(e) = &st.last_error {
                println!("last error: {e}");
            }
        } else if state.is_some() {
            println!("(the service pipe does not answer: the service is not running)");
        }
    }
    if state.is_none() {
        std::process::exit(3);
    }
    Ok(())
}
