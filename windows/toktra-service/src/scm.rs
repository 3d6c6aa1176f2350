//! `ToktraAgent.exe install | uninstall | status`: the service's registration with the
//! Service Control Manager and everything else an install puts on the machine (Event
//! Log source, tray Run key, native messaging host registration).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceSidType, ServiceStartType, ServiceState,
    ServiceType,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use winreg::RegKey;
use winreg::enums::HKEY_LOCAL_MACHINE;

use crate::eventlog;

pub const SERVICE_NAME: &str = "ToktraAgent";
pub const DISPLAY_NAME: &str = "Toktra Agent";
pub const DESCRIPTION: &str = "Reports which LLM tools are used on this device, from connection metadata only. Never decrypts or blocks traffic.";
/// The argument the SCM starts the executable with (see `main`).
pub const SERVICE_ARG: &str = "service";

pub const RUN_KEY: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Run";
pub const RUN_VALUE: &str = "ToktraTray";
pub const NATIVE_HOST_NAME: &str = "io.toktra.agent";
pub const NATIVE_HOST_KEYS: [&str; 2] = [
    r"SOFTWARE\Microsoft\Edge\NativeMessagingHosts\io.toktra.agent",
    r"SOFTWARE\Google\Chrome\NativeMessagingHosts\io.toktra.agent",
];

/// Calls Windows makes but Wine refuses (error 124, ERROR_INVALID_LEVEL): they are
/// made anyway, and a failure is reported and tolerated rather than fatal, because
/// the service works without them (it just starts at once, is not restarted by the
/// SCM, or runs without its own SID).
fn tolerated(what: &str, result: windows_service::Result<()>, report: &mut Vec<String>) {
    let line = match result {
        Ok(()) => format!("{what}: ok"),
        Err(e) => format!("{what}: failed ({}), tolerated", describe(&e)),
    };
    tracing::info!("{line}");
    report.push(line);
}

fn describe(e: &windows_service::Error) -> String {
    match e {
        windows_service::Error::Winapi(io) => io.to_string(),
        other => other.to_string(),
    }
}

/// Registers the service and the machine-wide pieces around it. Idempotent: a second
/// install updates the registration (e.g. a new path). Returns the lines it printed.
pub fn install(exe: &Path, extension_ids: &[String]) -> anyhow::Result<Vec<String>> {
    let dir = exe.parent().context("the executable has no directory")?;
    let mut report = Vec::new();
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )
    .context("connecting to the Service Control Manager (run as Administrator)")?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe.to_owned(),
        launch_arguments: vec![OsString::from(SERVICE_ARG)],
        dependencies: vec![],
        account_name: None, // LocalSystem: it reads the driver and LocalMachine\My
        account_password: None,
    };
    let access = ServiceAccess::QUERY_STATUS
        | ServiceAccess::START
        | ServiceAccess::STOP
        | ServiceAccess::CHANGE_CONFIG
        | ServiceAccess::QUERY_CONFIG;
    let service = match manager.open_service(SERVICE_NAME, access) {
        Ok(s) => {
            s.change_config(&info)
                .context("updating the existing ToktraAgent service")?;
            report.push(format!("service {SERVICE_NAME} updated: {}", exe.display()));
            s
        }
        Err(_) => {
            let s = manager
                .create_service(&info, access)
                .context("creating the ToktraAgent service")?;
            report.push(format!("service {SERVICE_NAME} created: {}", exe.display()));
            s
        }
    };
    tolerated(
        "set description",
        service.set_description(DESCRIPTION),
        &mut report,
    );
    tolerated(
        "ChangeServiceConfig2(SERVICE_CONFIG_DELAYED_AUTO_START_INFO)",
        service.set_delayed_auto_start(true),
        &mut report,
    );
    // Restart after 10 s, 30 s, then every 60 s; the count resets after a day without
    // failures. A configuration error is a clean stop with a service-specific code,
    // which the SCM does not treat as a failure: no restart loop for a missing OrgId.
    tolerated(
        "ChangeServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS)",
        service.update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(10),
                },
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(30),
                },
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(60),
                },
            ]),
        }),
        &mut report,
    );
    tolerated(
        "ChangeServiceConfig2(SERVICE_CONFIG_SERVICE_SID_INFO)",
        service.set_config_service_sid_info(ServiceSidType::Unrestricted),
        &mut report,
    );

    eventlog::register_source().context("registering the Event Log source")?;
    report.push(format!("event log source {} registered", eventlog::SOURCE));

    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let tray = dir.join("ToktraTray.exe");
    let (run, _) = hklm.create_subkey(RUN_KEY).context("opening the Run key")?;
    run.set_value(RUN_VALUE, &format!("\"{}\"", tray.display()))
        .context("registering the tray in the Run key")?;
    report.push(format!(
        "tray registered to start at logon: {}",
        tray.display()
    ));

    let manifest = write_native_host_manifest(dir, extension_ids)?;
    for key in NATIVE_HOST_KEYS {
        let (k, _) = hklm
            .create_subkey(key)
            .with_context(|| format!("creating HKLM\\{key}"))?;
        k.set_value("", &manifest.display().to_string())
            .with_context(|| format!("writing HKLM\\{key}"))?;
        report.push(format!("native messaging host registered: HKLM\\{key}"));
    }
    std::fs::create_dir_all(crate::paths::log_dir()).context("creating the log directory")?;
    for line in &report {
        println!("{line}");
    }
    Ok(report)
}

/// The native messaging host manifest next to the executables (Chrome and Edge read
/// the path from the registry value).
pub fn write_native_host_manifest(dir: &Path, extension_ids: &[String]) -> anyhow::Result<PathBuf> {
    for id in extension_ids {
        anyhow::ensure!(
            id.len() == 32 && id.bytes().all(|b| (b'a'..=b'p').contains(&b)),
            "{id:?} is not an extension id (32 letters a-p)"
        );
    }
    let manifest = serde_json::json!({
        "name": NATIVE_HOST_NAME,
        "description": "Toktra Agent native messaging host",
        "path": dir.join("toktra-native-host.exe").display().to_string(),
        "type": "stdio",
        "allowed_origins": extension_ids.iter().map(|id| format!("chrome-extension://{id}/")).collect::<Vec<_>>(),
    });
    let path = dir.join(format!("{NATIVE_HOST_NAME}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn wait_for(
    service: &windows_service::service::Service,
    want: ServiceState,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match service.query_status() {
            Ok(s) if s.current_state == want => return true,
            Err(_) => return false,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
    false
}

/// Stops and removes the service and what `install` added. The configuration
/// (HKLM\SOFTWARE\Toktra\Agent), the certificate and the data directory stay: they
/// belong to the administrator and the MSI's uninstall.
pub fn uninstall() -> anyhow::Result<()> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("connecting to the Service Control Manager (run as Administrator)")?;
    match manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    ) {
        Ok(service) => {
            if service
                .query_status()
                .is_ok_and(|s| s.current_state != ServiceState::Stopped)
            {
                let _ = service.stop();
                if !wait_for(&service, ServiceState::Stopped, Duration::from_secs(30)) {
                    println!("warning: the service did not stop within 30 s; deleting anyway");
                }
            }
            service
                .delete()
                .context("deleting the ToktraAgent service")?;
            println!("service {SERVICE_NAME} deleted");
        }
        Err(_) => println!("service {SERVICE_NAME} was not installed"),
    }
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    if let Ok(run) = hklm.open_subkey_with_flags(RUN_KEY, winreg::enums::KEY_ALL_ACCESS) {
        let _ = run.delete_value(RUN_VALUE);
    }
    for key in NATIVE_HOST_KEYS {
        let _ = hklm.delete_subkey_all(key);
    }
    eventlog::unregister_source().context("removing the Event Log source")?;
    println!("tray Run key, native messaging host registration and event log source removed");
    Ok(())
}

/// The SCM's view of the service, or None if it is not installed.
pub fn query_state() -> anyhow::Result<Option<ServiceState>> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
        .context("connecting to the Service Control Manager")?;
    match manager.open_service(SERVICE_NAME, ServiceAccess::QUERY_STATUS) {
        Ok(s) => Ok(Some(s.query_status()?.current_state)),
        Err(_) => Ok(None),
    }
}
