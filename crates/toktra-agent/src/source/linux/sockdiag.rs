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
        let (src, dst) = if tcp { (local, remote) } else { (remote, local) };
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
/// passes, not just the one asked for: connections opened together (a ring block
/// delivers their SYNs together) are then answered from the map without another
/// scan. Processes that owned recent connections are scanned first, because a busy
/// client opens many connections from one process.
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
    /// Reused path buffer for the readlink calls.
    path: String,
}

/// Socket inodes above this many are forgotten at once (stale entries of closed
/// sockets accumulate otherwise).
const MAX_INODES: usize = 65_536;

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
    /// Records every socket of `pid`; true when `inode` is among them.
    fn scan(&mut self, pid: u32, inode: u32) -> bool {
        use std::fmt::Write as _;
        use std::os::unix::ffi::OsStrExt as _;
        self.path.clear();
        let _ = write!(self.path, "/proc/{pid}/fd/");
        let Ok(dir) = std::fs::read_dir(&self.path) else {
            return false;
        };
        let base = self.path.len();
        let mut found = false;
        for fd in dir.flatten() {
            self.path.truncate(base);
            self.path.push_str(&fd.file_name().to_string_lossy());
            let Ok(target) = std::fs::read_link(&self.path) else {
                continue;
            };
            if let Some(i) = socket_inode(target.as_os_str().as_bytes()) {
                if self.inodes.len() >= MAX_INODES {
                    self.inodes.clear();
                }
                self.inodes.insert(i, pid);
                found |= i == inode;
            }
        }
        found
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

    pub fn pid_of_inode(&mut self, inode: u32) -> Option<u32> {
        if inode == 0 {
            return None;
        }
        if let Some(&pid) = self.inodes.get(&inode) {
            return Some(pid);
        }
        for k in 0..self.recent.len() {
            let pid = self.recent[k];
            if self.scan(pid, inode) {
                self.remember(pid);
                return Some(pid);
            }
        }
        let dir = std::fs::read_dir("/proc").ok()?;
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if self.recent.contains(&pid) {
                continue;
            }
            if self.scan(pid, inode) {
                self.remember(pid);
                return Some(pid);
            }
        }
        None
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

fn lookup_user(uid: u32) -> Option<String> {
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
        // delivers several SYNs at once): the scan that finds the first socket
        // records the second too, so its owner is known without another scan.
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
        assert_eq!(idx.pid_of_inode(owner.inode), Some(std::process::id()));
        assert_eq!(
            idx.inodes.get(&other_owner.inode),
            Some(&std::process::id())
        );
        assert_eq!(
            idx.pid_of_inode(other_owner.inode),
            Some(std::process::id())
        );
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
}
