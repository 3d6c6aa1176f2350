//! Budget status: kept from upload acknowledgements and polls of
//! `GET /v1/agent/budget`; a crossing of a threshold or of a hard cap is told to the
//! user through a [`Notifier`] (a desktop notification on Linux, the tray on Windows).

use std::collections::HashMap;
use toktra_proto::{BudgetEntry, BudgetState, BudgetStatus};

/// Tells the user something about their budget.
pub trait Notifier: Send + Sync {
    fn notify(&self, summary: &str, body: &str);

    /// A notice for one local user (`user` as the agent reports it), or for everyone
    /// on the machine when `None`. Notifiers that cannot tell users apart show it to
    /// whoever they reach.
    fn notify_user(&self, user: Option<&str>, summary: &str, body: &str) {
        let _ = user;
        self.notify(summary, body);
    }
}

/// Writes the notice to the log: used when there is no desktop to show it on.
pub struct LogNotifier;

impl Notifier for LogNotifier {
    fn notify(&self, summary: &str, body: &str) {
        tracing::info!("budget notice: {summary}: {body}");
    }
}

/// A notice for the user, decided by comparing a new status with the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The local user the budget entry is about; `None` for the organization's.
    pub user: Option<String>,
    pub summary: String,
    pub body: String,
}

/// (user, department, period) of a budget entry.
type EntryKey = (Option<String>, Option<String>, String);

/// Remembers what the user was last told so each crossing is told once.
#[derive(Debug, Default)]
pub struct BudgetWatcher {
    last: Option<BudgetStatus>,
    told: HashMap<EntryKey, (Option<u8>, BudgetState)>,
}

fn scope(e: &BudgetEntry) -> String {
    match (&e.department, &e.user) {
        (Some(d), _) => format!("department {d}"),
        (None, Some(u)) => format!("user {u}"),
        (None, None) => "organization".into(),
    }
}

impl BudgetWatcher {
    pub fn current(&self) -> Option<&BudgetStatus> {
        self.last.as_ref()
    }

    /// Takes a new status and returns the notices it calls for.
    pub fn update(&mut self, status: BudgetStatus) -> Vec<Notice> {
        let mut out = Vec::new();
        for e in &status.entries {
            let key = (e.user.clone(), e.department.clone(), e.period.clone());
            let prev = self.told.get(&key).copied();
            let (prev_pct, prev_state) = prev.unwrap_or((None, BudgetState::Ok));
            let crossed_threshold = e.threshold_pct.is_some() && e.threshold_pct > prev_pct;
            let newly_exceeded =
                e.state == BudgetState::Exceeded && prev_state != BudgetState::Exceeded;
            if crossed_threshold || newly_exceeded {
                let pct = e
                    .threshold_pct
                    .unwrap_or(if newly_exceeded { 100 } else { 75 });
                let summary = if e.state == BudgetState::Exceeded && e.hard_cap {
                    format!("Toktra: LLM budget of the {} reached (hard cap)", scope(e))
                } else if e.state == BudgetState::Exceeded {
                    format!("Toktra: LLM budget of the {} exceeded", scope(e))
                } else {
                    format!("Toktra: {pct} % of the {} LLM budget used", scope(e))
                };
                let body = format!(
                    "{} of {} tokens used in {} ({} left).{}",
                    e.used,
                    e.limit,
                    e.period,
                    e.remaining,
                    if e.hard_cap && e.state == BudgetState::Exceeded {
                        " LLM requests from the browser may now be blocked."
                    } else {
                        ""
                    }
                );
                out.push(Notice {
                    user: e.user.clone(),
                    summary,
                    body,
                });
            }
            self.told
                .insert(key, (e.threshold_pct.max(prev_pct), e.state));
        }
        self.last = Some(status);
        out
    }
}

/// Linux: freedesktop notifications over D-Bus, on the session bus of every user
/// logged in to this machine.
///
/// The agent runs as a system service: root, with no session bus of its own. A
/// session bus (`/run/user/UID/bus`, made by systemd-logind and the user's
/// dbus-daemon) accepts only its owner — root included is refused at authentication,
/// because the daemon compares the uid the socket's peer credentials give with its
/// own. So, as root, the notifier connects to each `/run/user/UID/bus` *as UID*: a
/// dedicated thread switches only its own effective uid (Linux keeps credentials per
/// thread; the raw system call does not broadcast to the process as glibc's
/// `seteuid` would), connects, and switches back before it speaks D-Bus. That needs
/// CAP_SETUID, which the systemd unit keeps. Run as an ordinary user (a desktop
/// session), it uses that user's own bus. Without any bus the notice is logged.
#[cfg(target_os = "linux")]
pub struct DesktopNotifier;

/// How long a notification server may take to answer; a hung one must not keep the
/// notifier's thread forever.
#[cfg(target_os = "linux")]
const NOTIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where logind puts each logged-in user's runtime directory (and its `bus`).
#[cfg(target_os = "linux")]
pub const RUN_USER_DIR: &str = "/run/user";

/// A session bus to show a notice on.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionBus {
    /// `/run/user/UID/bus` of another user, reached as that user.
    User {
        uid: u32,
        socket: std::path::PathBuf,
    },
    /// This process's own session bus.
    Own,
}

#[cfg(target_os = "linux")]
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(
        "cannot act as uid {uid} to reach its session bus: {source} (the agent needs CAP_SETUID for this)"
    )]
    SwitchUser { uid: u32, source: std::io::Error },
    #[error("connecting to {path}: {source}")]
    Connect {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
}

#[cfg(target_os = "linux")]
impl DesktopNotifier {
    /// The session buses of the users logged in to this machine (as root), or this
    /// process's own (as a user).
    pub fn session_buses() -> Vec<SessionBus> {
        Self::session_buses_in(std::path::Path::new(RUN_USER_DIR))
    }

    /// As [`Self::session_buses`], looking for users' runtime directories in `run_user`.
    pub fn session_buses_in(run_user: &std::path::Path) -> Vec<SessionBus> {
        use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            let own = std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
                || run_user.join(euid.to_string()).join("bus").exists();
            return if own { vec![SessionBus::Own] } else { vec![] };
        }
        let Ok(dir) = std::fs::read_dir(run_user) else {
            return vec![];
        };
        let mut out: Vec<SessionBus> = dir
            .flatten()
            .filter_map(|entry| {
                let uid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let socket = entry.path().join("bus");
                let meta = std::fs::symlink_metadata(&socket).ok()?;
                // Only a socket its own user made: a bus planted in another user's
                // directory is not that user's desktop.
                (meta.file_type().is_socket() && meta.uid() == uid)
                    .then_some(SessionBus::User { uid, socket })
            })
            .collect();
        out.sort_by_key(|b| match b {
            SessionBus::User { uid, .. } => *uid,
            SessionBus::Own => 0,
        });
        out
    }

    /// Shows one notice on one bus and returns the notification server's id for it.
    /// Blocking: call it off the async runtime.
    pub fn send(
        bus: &SessionBus,
        summary: &str,
        body: &str,
        urgent: bool,
    ) -> Result<u32, NotifyError> {
        zbus::block_on(async {
            let conn = match bus {
                SessionBus::Own => {
                    zbus::connection::Builder::session()
                        .method_timeout(NOTIFY_TIMEOUT)
                        .build()
                        .await?
                }
                SessionBus::User { uid, socket } => {
                    let stream = connect_as(*uid, socket)?;
                    zbus::connection::Builder::unix_stream(stream)
                        // EXTERNAL authentication names the uid the socket was opened
                        // as, not the thread's (root) identity now.
                        .user_id(*uid)
                        .method_timeout(NOTIFY_TIMEOUT)
                        .build()
                        .await?
                }
            };
            let mut hints = std::collections::HashMap::<&str, zbus::Variant<'_>>::new();
            // freedesktop urgency: 1 normal, 2 critical (stays until dismissed).
            hints.insert("urgency", zbus::Variant::U8(if urgent { 2 } else { 1 }));
            let reply = conn
                .call_method(
                    Some("org.freedesktop.Notifications"),
                    "/org/freedesktop/Notifications",
                    Some("org.freedesktop.Notifications"),
                    "Notify",
                    &(
                        "Toktra",
                        0u32,
                        if urgent {
                            "dialog-error"
                        } else {
                            "dialog-warning"
                        },
                        summary,
                        body,
                        Vec::<&str>::new(),
                        hints,
                        -1i32,
                    ),
                )
                .await?;
            let id: u32 = reply.body().deserialize()?;
            Ok(id)
        })
    }
}

/// Opens a Unix socket with `uid` as this thread's effective uid, so the peer sees
/// that user, then returns to the previous one.
#[cfg(target_os = "linux")]
fn connect_as(
    uid: u32,
    socket: &std::path::Path,
) -> Result<std::os::unix::net::UnixStream, NotifyError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let before = unsafe { libc::geteuid() };
    let connect = || {
        std::os::unix::net::UnixStream::connect(socket).map_err(|source| NotifyError::Connect {
            path: socket.to_owned(),
            source,
        })
    };
    if before == uid {
        return connect();
    }
    set_thread_euid(uid).map_err(|source| NotifyError::SwitchUser { uid, source })?;
    let stream = connect();
    if let Err(e) = set_thread_euid(before) {
        // The real and saved uids are unchanged, so this cannot fail in practice; if
        // it did, this thread must not go on as another user.
        panic!("cannot return to uid {before} after reaching uid {uid}'s session bus: {e}");
    }
    stream
}

/// Sets only the calling thread's effective uid (the raw system call: glibc's
/// wrappers would change every thread of the process).
#[cfg(target_os = "linux")]
fn set_thread_euid(uid: u32) -> std::io::Result<()> {
    const UNCHANGED: libc::uid_t = libc::uid_t::MAX;
    // SAFETY: setresuid takes three integers and touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, UNCHANGED, uid, UNCHANGED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The account name of `uid` as the tap's attribution reports users (without an
/// entry, the number), so notices match budget entries by the same name.
#[cfg(target_os = "linux")]
fn user_name(uid: u32) -> String {
    crate::source::linux::sockdiag::lookup_user(uid).unwrap_or_else(|| uid.to_string())
}

#[cfg(target_os = "linux")]
impl Notifier for DesktopNotifier {
    fn notify(&self, summary: &str, body: &str) {
        self.notify_user(None, summary, body);
    }

    /// A user's notice goes to that user's session bus only (on a shared machine the
    /// others' departments are not their business); the organization's to every bus.
    fn notify_user(&self, user: Option<&str>, summary: &str, body: &str) {
        let buses: Vec<SessionBus> = Self::session_buses()
            .into_iter()
            .filter(|b| match (b, user) {
                (SessionBus::User { uid, .. }, Some(u)) => user_name(*uid) == u,
                _ => true,
            })
            .collect();
        if buses.is_empty() {
            tracing::info!(
                "budget notice (no desktop session bus, so logged instead of shown): {summary}: {body}"
            );
            return;
        }
        let (summary, body) = (summary.to_owned(), body.to_owned());
        let urgent = summary.contains("hard cap") || summary.contains("exceeded");
        // Its own thread: the uid switch must not happen on a runtime worker, and a
        // slow notification server must not hold up the uploader.
        let spawned = std::thread::Builder::new()
            .name("toktra-notify".into())
            .spawn(move || {
                for bus in &buses {
                    match Self::send(bus, &summary, &body, urgent) {
                        Ok(id) => tracing::info!(?bus, id, "budget notice shown: {summary}"),
                        Err(e) => {
                            tracing::warn!(?bus, "budget notice not shown ({e}): {summary}: {body}")
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("budget notice not shown (no thread: {e})");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(used: u64, pct: Option<u8>, hard: bool) -> BudgetEntry {
        BudgetEntry {
            user: Some("alice".into()),
            department: Some("research".into()),
            period: "2026-11".into(),
            limit: 1000,
            used,
            remaining: 1000u64.saturating_sub(used),
            state: BudgetState::for_usage(used, 1000),
            hard_cap: hard,
            threshold_pct: pct,
        }
    }

    /// As root, a user's bus counts only if it is a socket that user owns: a bus in
    /// another user's directory is not that user's desktop.
    #[cfg(target_os = "linux")]
    #[test]
    fn session_buses_are_the_users_own_sockets() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let other = me.wrapping_add(4242);
        for uid in [me, other] {
            std::fs::create_dir(dir.path().join(uid.to_string())).unwrap();
        }
        let _mine =
            std::os::unix::net::UnixListener::bind(dir.path().join(me.to_string()).join("bus"))
                .unwrap();
        // Owned by us, not by `other`: planted, not that user's.
        let _planted =
            std::os::unix::net::UnixListener::bind(dir.path().join(other.to_string()).join("bus"))
                .unwrap();
        std::fs::create_dir(dir.path().join("not-a-uid")).unwrap();
        let buses = DesktopNotifier::session_buses_in(dir.path());
        if me == 0 {
            assert_eq!(
                buses,
                vec![SessionBus::User {
                    uid: 0,
                    socket: dir.path().join("0").join("bus")
                }]
            );
        } else {
            assert_eq!(buses, vec![SessionBus::Own]);
        }
    }

    #[test]
    fn each_crossing_is_told_once() {
        let mut w = BudgetWatcher::default();
        let st = |e| BudgetStatus { entries: vec![e] };
        assert!(w.update(st(entry(100, None, true))).is_empty());
        let n = w.update(st(entry(760, Some(75), true)));
        assert_eq!(n.len(), 1);
        assert!(n[0].summary.contains("75 %"), "{n:?}");
        assert_eq!(
            n[0].user.as_deref(),
            Some("alice"),
            "a notice for that user"
        );
        assert!(w.update(st(entry(800, Some(75), true))).is_empty());
        assert_eq!(w.update(st(entry(910, Some(90), true))).len(), 1);
        let n = w.update(st(entry(1000, Some(100), true)));
        assert_eq!(n.len(), 1);
        assert!(n[0].summary.contains("hard cap"), "{n:?}");
        assert!(n[0].summary.contains("department research"), "{n:?}");
        assert!(w.update(st(entry(1200, Some(100), true))).is_empty());
        assert_eq!(w.current().unwrap().entries[0].used, 1200);
    }
}
