//! Which local socket, user and process own a connection: one `SOCK_DIAG_BY_FAMILY`
//! netlink query for the exact 5-tuple gives the socket's uid and inode; the inode is
//! then found among the processes' open files in /proc.
//!
//! No crate covers inet_diag's exact-lookup request in a maintained form, and the
//! request and answer are two fixed-layout structs, so they are written out here.

use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::time::{Duration, Instant};
use toktra_proto::ProcessInfo;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDR: usize = 16;
const REQ_LEN: usize = NLMSG_HDR + 56;
/// inet_diag_msg: uid at 64, inode at 68 (after the 16-byte nlmsghdr).
const MSG_UID: usize = NLMSG_HDR + 64;
const MSG_INODE: usize = NLMSG_HDR + 68;

pub struct SockDiag {
    fd: OwnedFd,
    seq: u32,
}

/// Owner of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    pub uid: u32,
    pub inode: u32,
}

impl SockDiag {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, owned descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        // SAFETY: tv outlives the call; the size matches the type.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        Ok(Self { fd, seq: 0 })
    }

    /// The socket of `local` → `remote` (TCP when `tcp`, else UDP), if it exists in
    /// this network namespace.
    pub fn lookup(
        &mut self,
        tcp: bool,
        local: SocketAddr,
        remote: SocketAddr,
    ) -> Option<SocketOwner> {
        let family = match (local.ip(), remote.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => libc::AF_INET as u8,
            (IpAddr::V6(_), IpAddr::V6(_)) => libc::AF_INET6 as u8,
            _ => return None,
        };
        self.seq = self.seq.wrapping_add(1);
        let mut req = [0u8; REQ_LEN];
        req[0..4].copy_from_slice(&(REQ_LEN as u32).to_ne_bytes());
        req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        req[6..8].copy_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        req[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let r = &mut req[NLMSG_HDR..];
        r[0] = family;
        r[1] = if tcp {
            libc::IPPROTO_TCP
        } else {
            libc::IPPROTO_UDP
        } as u8;
        r[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // all states
        let id = &mut r[8..];
        // TCP's exact lookup takes the local end as the source; UDP's (udp_dump_one)
        // looks the socket up as for an arriving datagram, so its source is the
        // remote end — "swapped for historical reasons", says the kernel. With TCP's
        // order a QUIC client's socket is never found.
        let (src, dst) = if tcp {
            (local, remote)
        } else {
            (remote, local)
        };
        id[0..2].copy_from_slice(&src.port().to_be_bytes());
        id[2..4].copy_from_slice(&dst.port().to_be_bytes());
        put_addr(&mut id[4..20], src.ip());
        put_addr(&mut id[20..36], dst.ip());
        // interface 0 = any; cookie INET_DIAG_NOCOOKIE.
        id[40..48].copy_from_slice(&[0xff; 8]);
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: req and sa outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return None;
        }
        let mut buf = [0u8; 1024];
        loop {
            // SAFETY: buf is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return None;
            }
            let msg = &buf[..n as usize];
            if msg.len() < NLMSG_HDR {
                return None;
            }
            let seq = u32::from_ne_bytes(msg[8..12].try_into().ok()?);
            if seq != self.seq {
                // A late answer to an earlier query that timed out.
                continue;
            }
            let ty = u16::from_ne_bytes(msg[4..6].try_into().ok()?);
            if ty == NLMSG_ERROR || msg.len() < MSG_INODE + 4 {
                return None;
            }
            let uid = u32::from_ne_bytes(msg[MSG_UID..MSG_UID + 4].try_into().ok()?);
            let inode = u32::from_ne_bytes(msg[MSG_INODE..MSG_INODE + 4].try_into().ok()?);
            return Some(SocketOwner { uid, inode });
        }
    }
}

fn put_addr(out: &mut [u8], ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => out[0..4].copy_from_slice(&a.octets()),
        IpAddr::V6(a) => out.copy_from_slice(&a.octets()),
    }
}

/// Finds processes by socket inode. Reading every descriptor of a process is the
/// expensive part (one readlink each), so a scan records *every* socket inode it
/// passes, not just the ones asked for, and the inodes of a whole batch of new
/// connections are searched for together. Processes that owned recent connections
/// are scanned first, because a busy client opens many connections from one process;
/// every process is scanned only for sockets that are still open.
#[derive(Default)]
pub struct ProcIndex {
    recent: Vec<u32>,
    /// Socket inode -> process, as of the last scan of that process. Socket inodes
    /// come from a 32-bit counter that is not reused in practice while the map is
    /// bounded (it is cleared when it grows large).
    inodes: HashMap<u32, u32>,
    users: HashMap<u32, Option<String>>,
    /// Process details by pid, briefly: a client opening many connections is asked
    /// about once, not once per connection.
    infos: HashMap<u32, (Instant, Option<ProcessInfo>)>,
    /// Until when full scans are paused after one found nothing (sockets in another
    /// PID namespace, unreadable descriptors): such a miss would repeat every round.
    pause_full_until: Option<Instant>,
    pub stats: ScanStats,
}

/// What the searches cost, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanStats {
    /// Scans of one process's descriptors.
    pub process_scans: u64,
    /// Searches through every process.
    pub full_scans: u64,
}

/// Socket inodes above this many are forgotten at once (stale entries of closed
/// sockets accumulate otherwise).
const MAX_INODES: usize = 16_384;
/// How long full scans pause after one found none of its sockets.
const FULL_SCAN_PAUSE: Duration = Duration::from_secs(1);

/// The inode of a `socket:[N]` link target.
fn socket_inode(target: &[u8]) -> Option<u32> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

pub fn process_info(pid: u32) -> Option<ProcessInfo> {
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let path = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned());
    Some(ProcessInfo {
        pid,
        name: name.trim_end().to_owned(),
        path,
    })
}

impl ProcIndex {
    /// Records the sockets of `pid`, stopping once every inode of `wanted` is known.
    /// The descriptors are read relative to the open `/proc/PID/fd` directory
    /// (readlinkat), which spares the kernel a path walk per descriptor: the scan
    /// of a busy client's descriptors is the agent's largest cost per connection.
    fn scan(&mut self, pid: u32, wanted: &[u32]) {
        self.stats.process_scans += 1;
        let Ok(path) = std::ffi::CString::new(format!("/proc/{pid}/fd")) else {
            return;
        };
        // SAFETY: a plain open(2) of a NUL-terminated path; the result is checked.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return;
        }
        // SAFETY: fd is an open directory we own; on success the DIR owns it.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            // SAFETY: fdopendir failed, so fd is still ours to close.
            unsafe { libc::close(fd) };
            return;
        }
        let mut missing = wanted
            .iter()
            .filter(|&&i| i != 0 && !self.inodes.contains_key(&i))
            .count();
        let mut target = [0u8; 64];
        loop {
            // SAFETY: dir is a valid DIR until closedir below.
            let entry = unsafe { libc::readdir(dir) };
            if entry.is_null() {
                break;
            }
            // SAFETY: readdir returned a valid dirent whose d_name is NUL-terminated.
            let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name.to_bytes().first() == Some(&b'.') {
                continue;
            }
            // SAFETY: dir is valid, name is NUL-terminated, target's length is passed.
            let n = unsafe {
                libc::readlinkat(
                    libc::dirfd(dir),
                    name.as_ptr(),
                    target.as_mut_ptr().cast(),
                    target.len(),
                )
            };
            let Some(link) = usize::try_from(n).ok().and_then(|n| target.get(..n)) else {
                continue;
            };
            if let Some(i) = socket_inode(link) {
                if self.inodes.len() >= MAX_INODES {
                    self.inodes.clear();
                }
                let new = self.inodes.insert(i, pid).is_none();
                if new && wanted.contains(&i) {
                    missing = missing.saturating_sub(1);
                    if missing == 0 {
                        break;
                    }
                }
            }
        }
        // SAFETY: dir is valid and closed exactly once (this also closes fd).
        unsafe { libc::closedir(dir) };
    }

    fn remember(&mut self, pid: u32) {
        if let Some(i) = self.recent.iter().position(|&p| p == pid) {
            self.recent.remove(i);
        }
        self.recent.insert(0, pid);
        self.recent.truncate(8);
    }

    /// `process_info`, remembered for a second (a pid is not reused that fast).
    pub fn process_info(&mut self, pid: u32) -> Option<ProcessInfo> {
        if let Some((at, info)) = self.infos.get(&pid)
            && at.elapsed() < Duration::from_secs(1)
        {
            return info.clone();
        }
        if self.infos.len() > 1024 {
            self.infos
                .retain(|_, (at, _)| at.elapsed() < Duration::from_secs(1));
        }
        let info = process_info(pid);
        self.infos.insert(pid, (Instant::now(), info.clone()));
        info
    }

    /// The process of `inode` as far as the scans so far know.
    pub fn known_pid(&self, inode: u32) -> Option<u32> {
        (inode != 0)
            .then(|| self.inodes.get(&inode).copied())
            .flatten()
    }

    /// Searches for the processes of `inodes` (0 stands for none): the recent owners
    /// first, each scanned once; then, for inodes that `still_open` confirms, every
    /// process once. Afterwards [`ProcIndex::known_pid`] answers.
    pub fn find(&mut self, inodes: &[u32], mut still_open: impl FnMut(u32) -> bool) {
        let missing = |s: &Self| -> Vec<u32> {
            inodes
                .iter()
                .copied()
                .filter(|&i| i != 0 && !s.inodes.contains_key(&i))
                .collect()
        };
        let mut wanted = missing(self);
        if wanted.is_empty() {
            return;
        }
        let recent = self.recent.clone();
        for &pid in &recent {
            self.scan(pid, &wanted);
            wanted = missing(self);
            if wanted.is_empty() {
                break;
            }
        }
        wanted.retain(|&i| still_open(i));
        let paused = self.pause_full_until.is_some_and(|t| Instant::now() < t);
        if !wanted.is_empty() && !paused {
            self.stats.full_scans += 1;
            if let Ok(dir) = std::fs::read_dir("/proc") {
                for entry in dir.flatten() {
                    let Some(pid) = entry
                        .file_name()
                        .to_str()
                        .and_then(|s| s.parse::<u32>().ok())
                    else {
                        continue;
                    };
                    if recent.contains(&pid) {
                        continue;
                    }
                    self.scan(pid, &wanted);
                    if wanted.iter().all(|i| self.inodes.contains_key(i)) {
                        break;
                    }
                }
            }
            if !wanted.iter().any(|i| self.inodes.contains_key(i)) {
                self.pause_full_until = Some(Instant::now() + FULL_SCAN_PAUSE);
            }
        }
        let mut owners: Vec<u32> = inodes.iter().filter_map(|&i| self.known_pid(i)).collect();
        owners.dedup();
        for pid in owners.into_iter().rev() {
            self.remember(pid);
        }
    }

    /// The process of one socket inode (see [`ProcIndex::find`]).
    pub fn pid_of_inode(&mut self, inode: u32) -> Option<u32> {
        self.find(&[inode], |_| true);
        self.known_pid(inode)
    }

    /// The account name of a uid (cached; NSS may be slow).
    pub fn user_name(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| lookup_user(uid))
            .clone()
            .or_else(|| Some(uid.to_string()))
    }
}

/// The account name of `uid` from the passwd database (getpwuid_r).
pub fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is passed.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name points into buf and is NUL-terminated by getpwuid_r.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_our_own_tcp_connection_user_and_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let owner = diag
            .lookup(
                true,
                client.local_addr().unwrap(),
                client.peer_addr().unwrap(),
            )
            .expect("our socket is found");
        // SAFETY: getuid has no preconditions.
        assert_eq!(owner.uid, unsafe { libc::getuid() });
        // A second connection opened before the first lookup (as a ring block
        // delivers several connections at once): one search finds both.
        let other = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let other_owner = diag
            .lookup(
                true,
                other.local_addr().unwrap(),
                other.peer_addr().unwrap(),
            )
            .expect("second socket is found");
        let mut idx = ProcIndex::default();
        assert!(idx.inodes.is_empty());
        idx.find(&[owner.inode, other_owner.inode], |_| true);
        assert_eq!(idx.known_pid(owner.inode), Some(std::process::id()));
        assert_eq!(idx.known_pid(other_owner.inode), Some(std::process::id()));
        assert_eq!(idx.pid_of_inode(owner.inode), Some(std::process::id()));
        let info = process_info(std::process::id()).unwrap();
        assert!(
            info.path.unwrap().contains("toktra_agent"),
            "test binary path"
        );
        assert!(idx.user_name(owner.uid).is_some());
        // A 5-tuple nobody owns.
        assert!(
            diag.lookup(
                true,
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap()
            )
            .is_none()
        );
    }

    #[test]
    fn a_batch_of_sockets_costs_one_scan_and_closed_sockets_no_full_scan() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut diag = SockDiag::open().unwrap();
        let mut connect = || {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (s, _) = listener.accept().unwrap();
            let inode = diag
                .lookup(true, c.local_addr().unwrap(), c.peer_addr().unwrap())
                .expect("socket found")
                .inode;
            (c, s, inode)
        };
        let first = connect();
        let mut idx = ProcIndex::default();
        // A process never seen before is found by searching every process.
        idx.find(&[first.2], |_| true);
        assert_eq!(idx.known_pid(first.2), Some(std::process::id()));
        assert_eq!(idx.stats.full_scans, 1);
        // Three new connections of the same process: one scan of that process.
        let batch: Vec<_> = (0..3).map(|_| connect()).collect();
        let inodes: Vec<u32> = batch.iter().map(|b| b.2).collect();
        let scans = idx.stats.process_scans;
        idx.find(&inodes, |_| true);
        assert_eq!(idx.stats.process_scans, scans + 1);
        assert_eq!(idx.stats.full_scans, 1);
        for i in &inodes {
            assert_eq!(idx.known_pid(*i), Some(std::process::id()));
        }
        // A socket closed before its owner was searched for: its inode is in no
        // process, and sock_diag says so, so nobody searches every process for it.
        let (c, s, inode) = connect();
        let (local, peer) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
        drop(c);
        drop(s);
        let mut checked = 0;
        idx.find(&[inode], |i| {
            checked += 1;
            diag.lookup(true, local, peer).is_some_and(|o| o.inode == i)
        });
        assert_eq!(checked, 1);
        assert_eq!(idx.known_pid(inode), None);
        assert_eq!(idx.stats.full_scans, 1, "no futile full scan");
        assert_eq!(idx.known_pid(0), None);
    }
}
