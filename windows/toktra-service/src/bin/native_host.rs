//! toktra-native-host.exe: the Edge/Chrome native messaging host. The browser starts
//! it for the Toktra extension and talks to it over stdin/stdout; it checks every
//! message and forwards extension events to the ToktraAgent service pipe.
//!
//! Replies: `{"type":"pong","version":..}`, `{"type":"budget","budget":..}`,
//! `{"type":"ack","accepted":N,"ids":[..]}` (the extension drops its copies of those
//! ids) or `{"type":"error","error":".."}` (the extension keeps them and retries).

use std::io::{self, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};
use toktra_service::native::{self, FrameError, Incoming};
use toktra_service::pipe::Client;
use toktra_service::protocol::Op;

fn user_name() -> Option<String> {
    let user = std::env::var("USERNAME").ok()?;
    Some(match std::env::var("USERDOMAIN") {
        Ok(d) if !d.is_empty() => format!("{d}\\{user}"),
        _ => user,
    })
}

struct Host {
    client: Option<Client>,
    user: Option<String>,
}

impl Host {
    fn call(&mut self, op: Op) -> Result<toktra_service::protocol::Response, String> {
        // One reconnect: the service may have restarted since the last message.
        for attempt in 0..2 {
            if self.client.is_none() {
                self.client =
                    Some(Client::connect(Duration::from_secs(2)).map_err(|e| e.to_string())?);
            }
            match self.client.as_mut().map(|c| c.call(op.clone())) {
                Some(Ok(r)) => return Ok(r),
                Some(Err(toktra_service::pipe::ClientError::Refused(e))) => return Err(e),
                Some(Err(e)) if attempt == 1 => return Err(e.to_string()),
                _ => self.client = None,
            }
        }
        Err("the agent service is not reachable".into())
    }

    fn handle(&mut self, body: &[u8]) -> Value {
        let msg = match native::parse_incoming(body) {
            Ok(m) => m,
            Err(e) => return json!({"type": "error", "error": e.to_string()}),
        };
        match &msg {
            Incoming::Ping => json!({"type": "pong", "version": env!("CARGO_PKG_VERSION")}),
            Incoming::Budget => match self.call(Op::Budget) {
                Ok(r) => json!({"type": "budget", "budget": r.budget}),
                Err(e) => json!({"type": "error", "error": e}),
            },
            Incoming::Event { .. } | Incoming::Events { .. } => {
                let events = match native::events_of(&msg, self.user.as_deref(), chrono::Utc::now())
                {
                    Ok(ev) => ev,
                    Err(e) => return json!({"type": "error", "error": e.to_string()}),
                };
                let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
                match self.call(Op::Events { events }) {
                    Ok(r) => {
                        json!({"type": "ack", "accepted": r.accepted.unwrap_or(0), "ids": ids})
                    }
                    Err(e) => json!({"type": "error", "error": e}),
                }
            }
        }
    }
}

fn reply(out: &mut impl io::Write, v: &Value) -> Result<(), FrameError> {
    let body = serde_json::to_vec(v).map_err(io::Error::other)?;
    match native::write_message(out, &body) {
        Err(FrameError::TooLarge(n)) => native::write_message(
            out,
            json!({"type": "error", "error": format!("reply of {n} bytes exceeds the 1 MiB limit")})
                .to_string()
                .as_bytes(),
        ),
        other => other,
    }
}

fn main() -> ExitCode {
    // The browser passes the caller's origin as an argument; nothing else is expected.
    if std::env::args().any(|a| a == "--version") {
        println!("toktra-native-host {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let mut input = io::stdin().lock();
    let mut output = io::stdout().lock();
    let mut host = Host {
        client: None,
        user: user_name(),
    };
    loop {
        match native::read_message(&mut input) {
            Ok(None) => return ExitCode::SUCCESS,
            Ok(Some(body)) => {
                let answer = host.handle(&body);
                if let Err(e) = reply(&mut output, &answer) {
                    let _ = writeln!(
                        io::stderr(),
                        "toktra-native-host: writing to the browser: {e}"
                    );
                    return ExitCode::FAILURE;
                }
            }
            Err(e) => {
                // A broken frame cannot be resynchronised: say why, then end the session
                // (the browser reports the disconnect to the extension).
                let _ = reply(
                    &mut output,
                    &json!({"type": "error", "error": e.to_string()}),
                );
                let _ = writeln!(io::stderr(), "toktra-native-host: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}
