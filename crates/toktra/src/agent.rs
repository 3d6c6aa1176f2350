//! `toktra agent` and the agent-only `toktra-agent` binary (src/bin/toktra-agent.rs,
//! which includes this module): run the Linux agent (the systemd unit runs
//! `toktra-agent run`), or print its state (`status`).

use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use toktra_agent::config::{Config, ConfigLayer, DEFAULT_CONFIG_PATH};
use toktra_agent::identity::{FileIdentityStore, IdentityStore as _};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    run: Box<RunArgs>,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Capture LLM connections on this machine and upload them to the server (the
    /// default). Needs CAP_NET_RAW: run it as the toktra-agent systemd unit, as root,
    /// or after `setcap cap_net_raw,cap_net_admin+eip /usr/bin/toktra-agent`.
    Run(Box<RunArgs>),
    /// Print enrollment, certificate expiry, spool depth and age, last upload, drops
    /// and budget state of the running agent (from its status file).
    Status(StatusArgs),
}

/// Configuration is layered: built-in defaults, then the config file, then TOKTRA_*
/// environment variables, then these flags; each layer overrides only what it sets.
#[derive(clap::Args, Default, Clone)]
pub struct RunArgs {
    /// The agent.toml to read (default /etc/toktra/agent.toml; a missing default file
    /// is fine, a missing explicit one is an error).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// IngestUrl: the server's agent face, https://host:port [env TOKTRA_INGEST_URL;
    /// default https://ingest.toktra.io].
    #[arg(long, value_name = "URL")]
    pub ingest_url: Option<String>,
    /// OrgId: the organization this device enrolls into [env TOKTRA_ORG_ID; required].
    #[arg(long, value_name = "ID")]
    pub org_id: Option<String>,
    /// DeviceId: generated once and kept in the state directory when empty
    /// [env TOKTRA_DEVICE_ID].
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// CertSubject: the CN of the device certificate [env TOKTRA_CERT_SUBJECT; default
    /// "Toktra Device"].
    #[arg(long, value_name = "CN")]
    pub cert_subject: Option<String>,
    /// LogLevel: 0 error, 1 warn, 2 info, 3 debug [env TOKTRA_LOG_LEVEL; default 2].
    #[arg(long, value_name = "0-3")]
    pub log_level: Option<u32>,
    /// EnrollToken: the organization's enrollment token, needed until the device
    /// holds a certificate (and again if it expired while offline)
    /// [env TOKTRA_ENROLL_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    pub enroll_token: Option<String>,
    /// PEM file of the CA that signed the server's certificate, when it is not a
    /// public CA [env TOKTRA_SERVER_CA].
    #[arg(long, value_name = "PATH")]
    pub server_ca: Option<PathBuf>,
    /// Where the certificate, device id, spool and status file live
    /// [env TOKTRA_STATE_DIR; default /var/lib/toktra].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Ports whose TCP and UDP traffic is observed, comma-separated
    /// [env TOKTRA_CAPTURE_PORTS; default 443].
    #[arg(long, value_name = "PORTS", value_parser = parse_ports)]
    pub capture_ports: Option<Vec<u16>>,
    /// Spool bound in bytes [env TOKTRA_SPOOL_MAX_BYTES; default 104857600 = 100 MiB].
    #[arg(long, value_name = "BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Spool bound in seconds [env TOKTRA_SPOOL_MAX_AGE_SECS; default 604800 = 7 days].
    #[arg(long, value_name = "SECS")]
    pub spool_max_age_secs: Option<u64>,
    /// Do not open the packet tap (upload what is already spooled, keep enrolled).
    #[arg(long)]
    pub no_capture: bool,
    /// Seconds between budget status polls (uploads also bring it).
    #[arg(long, value_name = "SECS", default_value_t = 60, hide = true)]
    pub budget_poll_secs: u64,
}

#[derive(clap::Args)]
struct StatusArgs {
    /// The agent.toml that names the state directory (default /etc/toktra/agent.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// The agent's state directory [env TOKTRA_STATE_DIR; default /var/lib/toktra].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print the status file as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_ports(s: &str) -> Result<Vec<u16>, String> {
    toktra_agent::config::parse_ports(s).map_err(|e| e.to_string())
}

impl RunArgs {
    fn flag_layer(&self) -> ConfigLayer {
        ConfigLayer {
            ingest_url: self.ingest_url.clone(),
            org_id: self.org_id.clone(),
            device_id: self.device_id.clone(),
            cert_subject: self.cert_subject.clone(),
            log_level: self.log_level,
            enroll_token: self.enroll_token.clone(),
            server_ca: self.server_ca.clone(),
            state_dir: self.state_dir.clone(),
            capture_ports: self.capture_ports.clone(),
            spool_max_bytes: self.spool_max_bytes,
            spool_max_age_secs: self.spool_max_age_secs,
        }
    }

    /// defaults → agent.toml → TOKTRA_* → flags.
    pub fn resolve(&self) -> Result<Config, toktra_agent::config::ConfigError> {
        let (path, required) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        ConfigLayer::default()
            .merge(ConfigLayer::from_file(&path, required)?)
            .merge(ConfigLayer::from_env(|k| std::env::var(k).ok())?)
            .merge(self.flag_layer())
            .resolve()
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Sub::Status(s)) => status(s),
        Some(Sub::Run(r)) => run_agent(*r),
        None => run_agent(*args.run),
    }
}

fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let state_dir = match args.state_dir {
        Some(d) => d,
        None => {
            let (path, required) = match &args.config {
                Some(p) => (p.clone(), true),
                None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
            };
            let layer = ConfigLayer::from_file(&path, required)?
                .merge(ConfigLayer::from_env(|k| std::env::var(k).ok())?);
            layer
                .state_dir
                .unwrap_or_else(|| PathBuf::from(toktra_agent::config::DEFAULT_STATE_DIR))
        }
    };
    let st = toktra_agent::status::read(&state_dir).with_context(|| {
        format!(
            "no agent status in {} — is the agent running (systemctl status toktra-agent)? \
             Use --state-dir if it runs with another state directory",
            state_dir.display()
        )
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&st)?);
    } else {
        print!("{}", toktra_agent::status::render(&st, chrono::Utc::now()));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn init_logging(level: toktra_proto::config::LogLevel) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOKTRA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.as_filter()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Everything `toktra agent run` and `toktra up` share: config → identity → tap →
/// runner. `capture` false skips the tap; a tap that cannot open is an error for the
/// agent but only a notice for `up` (`tap_required`).
pub async fn run_configured(
    config: Config,
    capture: bool,
    tap_required: bool,
    budget_poll: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let device_id =
        toktra_agent::identity::ensure_device_id(config.device_id.as_deref(), &config.state_dir)
            .with_context(|| format!("state directory {}", config.state_dir.display()))?;
    let store = Arc::new(FileIdentityStore::new(&config.state_dir));
    toktra_agent::runner::preflight(&config, store.as_ref())?;
    if let Some(id) = store.load()? {
        let info = id.cert_info()?;
        tracing::info!(not_after = %info.not_after, "device certificate loaded");
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let capture_status = Arc::new(Mutex::new(None));
    let classifier = Arc::new(toktra_agent::pipeline::CatalogClassifier::embedded());
    let _tap = if capture {
        start_tap(
            &config,
            classifier.clone(),
            tx,
            capture_status.clone(),
            tap_required,
        )?
    } else {
        *capture_status.lock().unwrap_or_else(|p| p.into_inner()) =
            Some("off (--no-capture)".into());
        drop(tx);
        None
    };
    let parts = toktra_agent::runner::AgentParts {
        config,
        device_id,
        source: toktra_proto::Source::Linux,
        identity_store: store,
        classifier,
        notifier: notifier(),
        flows: rx,
        capture_status,
        budget_poll,
    };
    toktra_agent::runner::run(parts, shutdown).await?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn notifier() -> Arc<dyn toktra_agent::budget::Notifier> {
    Arc::new(toktra_agent::budget::DesktopNotifier)
}

#[cfg(not(target_os = "linux"))]
fn notifier() -> Arc<dyn toktra_agent::budget::Notifier> {
    Arc::new(toktra_agent::budget::LogNotifier)
}

#[cfg(target_os = "linux")]
type Tap = toktra_agent::source::linux::LinuxTap;
#[cfg(not(target_os = "linux"))]
type Tap = ();

#[cfg(target_os = "linux")]
fn start_tap(
    config: &Config,
    classifier: Arc<toktra_agent::pipeline::CatalogClassifier>,
    tx: tokio::sync::mpsc::Sender<toktra_agent::pipeline::ObservedFlow>,
    status: Arc<Mutex<Option<String>>>,
    required: bool,
) -> anyhow::Result<Option<Tap>> {
    use toktra_agent::pipeline::Classifier as _;
    // The tap looks up the owner of a connection only when its host is one the
    // pipeline keeps: other flows are dropped in memory anyway.
    let keep: toktra_agent::source::linux::HostFilter =
        Arc::new(move |host: &str| classifier.classify(host).is_some());
    let cfg = toktra_agent::source::linux::TapConfig {
        ports: config.capture_ports.clone(),
        device: "any".into(),
    };
    match toktra_agent::source::linux::start(&cfg, keep, tx, status.clone()) {
        Ok(t) => {
            tracing::info!("capturing TCP/UDP ports {:?} on all interfaces", cfg.ports);
            Ok(Some(t))
        }
        Err(e) if !required => {
            eprintln!("toktra: capture unavailable: {e}");
            *status.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("UNAVAILABLE: {e}"));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(not(target_os = "linux"))]
fn start_tap(
    _config: &Config,
    _classifier: Arc<toktra_agent::pipeline::CatalogClassifier>,
    _tx: tokio::sync::mpsc::Sender<toktra_agent::pipeline::ObservedFlow>,
    _status: Arc<Mutex<Option<String>>>,
    required: bool,
) -> anyhow::Result<Option<Tap>> {
    if required {
        anyhow::bail!("packet capture by `toktra agent` is available on Linux only");
    }
    Ok(None)
}

/// Resolves on Ctrl-C or SIGTERM (systemd's stop).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(target_os = "linux")]
fn deferred_thread() {
    use toktra_agent::source::linux::{ThreadClass, set_thread_class};
    set_thread_class(ThreadClass::Deferred);
}

#[cfg(not(target_os = "linux"))]
fn deferred_thread() {}

/// How messages name this program: this module is compiled into both `toktra`
/// (as `toktra agent`) and `toktra-agent`.
const PROGRAM: &str = match env!("CARGO_BIN_NAME").as_bytes() {
    b"toktra-agent" => "toktra-agent",
    _ => "toktra agent",
};

fn run_agent(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = match args.resolve() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    init_logging(config.log_level);
    // One thread for the async parts: the agent's work is small and mostly waiting;
    // the tap and the spool have their own threads. The runtime's threads are
    // deferred work that gives way to the user's programs at once (see
    // `ThreadClass::Deferred`).
    deferred_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .on_thread_start(deferred_thread)
        .build()?;
    let result = rt.block_on(run_configured(
        config,
        !args.no_capture,
        true,
        std::time::Duration::from_secs(args.budget_poll_secs.max(1)),
        shutdown_signal(),
    ));
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result?;
    Ok(ExitCode::SUCCESS)
}
