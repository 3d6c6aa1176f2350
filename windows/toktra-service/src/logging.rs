//! The service's file log: %ProgramData%\Toktra\Agent\logs\agent.log.YYYY-MM-DD, rotated
//! daily, the last 14 files kept, at the configured LogLevel.

use std::path::Path;

use toktra_proto::config::LogLevel;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

pub const LOG_FILE_PREFIX: &str = "agent.log";
pub const KEEP_FILES: usize = 14;

/// Starts logging to `dir`; keep the guard alive until the process ends, it flushes.
pub fn init_file(dir: &Path, level: LogLevel) -> anyhow::Result<WorkerGuard> {
    std::fs::create_dir_all(dir)?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(LOG_FILE_PREFIX)
        .max_log_files(KEEP_FILES)
        .build(dir)?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_ansi(false)
        .with_writer(writer)
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))?;
    Ok(guard)
}

/// Console logging (for `run` in a terminal).
pub fn init_console(level: LogLevel) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(std::io::stderr)
        .try_init();
}

fn filter(level: LogLevel) -> EnvFilter {
    // Everything at the configured level, except the network libraries' per-request
    // chatter, which only an explicit Debug brings in.
    let quiet = if level >= LogLevel::Debug {
        "debug"
    } else {
        "warn"
    };
    EnvFilter::new(format!(
        "{},hyper={quiet},hyper_util={quiet},h2={quiet},reqwest={quiet},rustls={quiet}",
        level.as_filter()
    ))
}
