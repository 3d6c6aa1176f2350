//! The Windows side of the Toktra agent: the service (ToktraAgent.exe), the per-user
//! tray (ToktraTray.exe) and the browser's native messaging host
//! (toktra-native-host.exe) share these modules. The platform-neutral pipeline comes
//! from `toktra-agent`; what is here is what only Windows has: the registry, the
//! Service Control Manager, the Event Log, the certificate store, DPAPI, named pipes,
//! the capture driver's device.

pub mod certstore;
pub mod config;
pub mod dpapi;
pub mod driver;
pub mod eventlog;
pub mod identity;
pub mod logging;
pub mod native;
pub mod paths;
pub mod pipe;
pub mod protocol;
pub mod runtime;
pub mod scm;
pub mod service;
pub mod tray;
pub mod win;
