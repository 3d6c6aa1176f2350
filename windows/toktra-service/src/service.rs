//! The service itself: the SCM's entry point, start-up checks, and the stop path.

use std::ffi::OsString;
use std::time::Duration;

use tokio::sync::watch;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::{define_windows_service, service_dispatcher};

use crate::eventlog::{self, Kind, ids};
use crate::scm::SERVICE_NAME;
use crate::{config, logging, paths, runtime};

/// Service-specific exit codes (visible in `sc query` as SERVICE_EXIT_CODE).
pub const EXIT_CONFIG: u32 = 1;
pub const EXIT_RUNTIME: u32 = 2;

define_windows_service!(ffi_service_main, service_main);

/// Hands the process to the SCM; returns when the service has stopped.
pub fn dispatch() -> windows_service::Result<()> {
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)
}

fn service_main(_args: Vec<OsString>) {
    if let Err(e) = run_service() {
        // Nothing else can report it: the SCM handle itself failed.
        let _ = eventlog::report(Kind::Error, ids::ERROR, &format!("ToktraAgent: {e:#}"));
    }
}

fn status(state: ServiceState, exit: ServiceExitCode, wait: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: if state == ServiceState::Running {
            ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
        } else {
            ServiceControlAccept::empty()
        },
        exit_code: exit,
        checkpoint: 0,
        wait_hint: wait,
        process_id: None,
    }
}

/// Reports a problem to both the file log and the Event Log.
pub fn report_error(id: u32, message: &str) {
    tracing::error!("{message}");
    match eventlog::report(Kind::Error, id, message) {
        Ok(()) => tracing::info!("reported to the Event Log (event {id})"),
        Err(e) => tracing::warn!("could not write to the Event Log: {e}"),
    }
}

fn run_service() -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let handle = service_control_handler::register(SERVICE_NAME, move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = stop_tx.send(true);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    })?;
    handle.set_service_status(status(
        ServiceState::StartPending,
        ServiceExitCode::Win32(0),
        Duration::from_secs(10),
    ))?;

    let exit = match config::load() {
        Err(e) => {
            // Log at the default level: the configured one is what failed to load.
            let _guard = logging::init_file(&paths::log_dir(), Default::default()).ok();
            report_error(
                ids::CONFIG_ERROR,
                &format!("Toktra Agent cannot start: {e}. The service stops until this is fixed."),
            );
            // A clean stop with a service-specific code: the SCM's failure actions only
            // fire on crashes, so a missing OrgId is not restarted in a loop.
            ServiceExitCode::ServiceSpecific(EXIT_CONFIG)
        }
        Ok(cfg) => {
            let _guard = logging::init_file(&paths::log_dir(), cfg.log_level)?;
            handle.set_service_status(status(
                ServiceState::Running,
                ServiceExitCode::Win32(0),
                Duration::default(),
            ))?;
            let exit = run_until_stopped(cfg, stop_rx);
            handle.set_service_status(status(
                ServiceState::StopPending,
                ServiceExitCode::Win32(0),
                Duration::from_secs(10),
            ))?;
            exit
        }
    };
    handle.set_service_status(status(ServiceState::Stopped, exit, Duration::default()))?;
    Ok(())
}

/// Runs the agent (used by the service and by `ToktraAgent.exe run`).
pub fn run_until_stopped(cfg: config::AgentConfig, stop: watch::Receiver<bool>) -> ServiceExitCode {
    let started = format!(
        "Toktra Agent {} started (org {}, device {}, ingest {}, log level {:?}{})",
        env!("CARGO_PKG_VERSION"),
        cfg.org_id,
        cfg.device_id,
        cfg.ingest_url,
        cfg.log_level,
        if cfg.device_id_generated {
            ", DeviceId generated and stored"
        } else {
            ""
        }
    );
    tracing::info!("{started}");
    if let Err(e) = eventlog::report(Kind::Info, ids::STARTED, &started) {
        tracing::warn!("could not write to the Event Log: {e}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report_error(
                ids::ERROR,
                &format!("Toktra Agent cannot start its runtime: {e}"),
            );
            return ServiceExitCode::ServiceSpecific(EXIT_RUNTIME);
        }
    };
    let result = rt.block_on(runtime::run(cfg, stop));
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => {
            let msg = "Toktra Agent stopped";
            tracing::info!("{msg}");
            let _ = eventlog::report(Kind::Info, ids::STOPPED, msg);
            ServiceExitCode::Win32(0)
        }
        Err(e) => {
            report_error(
                ids::ERROR,
                &format!("Toktra Agent stopped on an error: {e:#}"),
            );
            ServiceExitCode::ServiceSpecific(EXIT_RUNTIME)
        }
    }
}
