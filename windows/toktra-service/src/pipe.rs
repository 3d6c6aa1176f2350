//! The service end and the client end of `\\.\pipe\toktra-agent`.
//!
//! The pipe's DACL: SYSTEM and Administrators full control; interactive users may
//! read and write data on an existing instance (a request line must be written to be
//! answered) but may not create instances (no pipe squatting), change the DACL or
//! take ownership. What they can ask for is limited by the protocol, not the ACL:
//! status, budget and notifications to read, extension events to hand in.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};

use crate::dpapi::SecurityDescriptor;
use crate::protocol::{
    MAX_LINE, Op, PIPE_NAME, PROTOCOL_VERSION, ProtocolError, Request, Response, parse_request,
};

/// 0x12008b = FILE_GENERIC_READ | FILE_WRITE_DATA (0x120089 | 0x2), deliberately
/// without FILE_APPEND_DATA, which on a pipe is the right to create an instance.
pub const PIPE_SDDL: &str = "D:P(A;;GA;;;SY)(A;;GA;;;BA)(A;;0x12008b;;;IU)";

/// What the service answers with; the pipe only carries it.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, op: Op) -> Response;
}

fn create(first: bool, sd: &SecurityDescriptor) -> std::io::Result<NamedPipeServer> {
    let mut sa = sd.attributes();
    let mut opts = ServerOptions::new();
    opts.first_pipe_instance(first).reject_remote_clients(true);
    // SAFETY: `sa` and the descriptor it points to outlive the call.
    unsafe { opts.create_with_security_attributes_raw(PIPE_NAME, (&raw mut sa).cast()) }
}

/// Serves until `shutdown` fires. Fails at once if another process already owns the
/// pipe name (first_pipe_instance), so a squatter cannot impersonate the service.
pub async fn serve(
    handler: Arc<dyn Handler>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let sd = SecurityDescriptor::from_sddl(PIPE_SDDL)?;
    let mut server = create(true, &sd).map_err(|e| {
        anyhow::anyhow!("creating {PIPE_NAME}: {e} (is another ToktraAgent already running?)")
    })?;
    tracing::info!("listening on {PIPE_NAME}");
    loop {
        tokio::select! {
            r = server.connect() => r?,
            _ = shutdown.changed() => return Ok(()),
        }
        let connected = std::mem::replace(&mut server, create(false, &sd)?);
        let h = handler.clone();
        tokio::spawn(async move {
            if let Err(e) = session(connected, h).await {
                tracing::debug!("pipe client: {e}");
            }
        });
    }
}

async fn session(pipe: NamedPipeServer, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    let (rd, mut wr) = tokio::io::split(pipe);
    let mut rd = TokioBufReader::new(rd);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut rd)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let too_long = line.len() > MAX_LINE;
        let resp = if too_long {
            Response::error(ProtocolError::TooLong.to_string())
        } else {
            match parse_request(trim_newline(&line)) {
                Ok(Request { op, .. }) => {
                    let h = handler.clone();
                    // Handlers may touch the spool (SQLite): keep them off the reactor.
                    tokio::task::spawn_blocking(move || h.handle(op))
                        .await
                        .unwrap_or_else(|e| Response::error(format!("internal error: {e}")))
                }
                Err(e) => Response::error(e.to_string()),
            }
        };
        let mut out = serde_json::to_vec(&resp).map_err(std::io::Error::other)?;
        out.push(b'\n');
        wr.write_all(&out).await?;
        wr.flush().await?;
        if too_long {
            // The rest of an oversized line cannot be resynchronised: hang up.
            return Ok(());
        }
    }
}

fn trim_newline(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\n' | b'\r'] = b {
        b = rest;
    }
    b
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "the Toktra Agent service is not reachable at {PIPE_NAME}: {0} (is the service running?)"
    )]
    Connect(#[source] std::io::Error),
    #[error("talking to the service over {PIPE_NAME}: {0}")]
    Io(#[from] std::io::Error),
    #[error("the service sent an unreadable answer: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the service refused the request: {0}")]
    Refused(String),
}

/// A blocking client (the tray, the native host and `status` need nothing more).
pub struct Client {
    reader: BufReader<std::fs::File>,
}

impl Client {
    /// Connects, waiting up to `wait` for a free instance.
    pub fn connect(wait: Duration) -> Result<Self, ClientError> {
        const ERROR_PIPE_BUSY: i32 = 231;
        let deadline = std::time::Instant::now() + wait;
        loop {
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(PIPE_NAME)
            {
                Ok(f) => {
                    return Ok(Self {
                        reader: BufReader::new(f),
                    });
                }
                Err(e)
                    if e.raw_os_error() == Some(ERROR_PIPE_BUSY)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(ClientError::Connect(e)),
            }
        }
    }

    /// Sends one request and reads its answer; an `ok: false` answer is an error.
    pub fn call(&mut self, op: Op) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(&Request {
            v: PROTOCOL_VERSION,
            op,
        })?;
        line.push(b'\n');
        self.call_raw(&line)
    }

    /// Sends bytes as they are (tests use it to send malformed requests).
    pub fn call_raw(&mut self, line: &[u8]) -> Result<Response, ClientError> {
        self.reader.get_mut().write_all(line)?;
        self.reader.get_mut().flush()?;
        let mut answer = Vec::new();
        (&mut self.reader)
            .take(MAX_LINE as u64 * 8)
            .read_until(b'\n', &mut answer)?;
        if answer.is_empty() {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the service closed the pipe",
            )));
        }
        let resp: Response = serde_json::from_slice(&answer)?;
        if !resp.ok {
            return Err(ClientError::Refused(resp.error.unwrap_or_default()));
        }
        Ok(resp)
    }
}
