//! The listening TCP sockets a process holds, read from `/proc` (no unsafe code: the socket
//! table gives each socket's address by inode, a process's `fd` directory its inodes), and
//! whether the addresses a config names can be listened on.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// A file descriptor number.
pub type Fd = i32;

/// The listening sockets of process `pid` (`"self"` for this one): each one's address and
/// descriptor number in that process.
pub fn listeners_of(pid: &str) -> io::Result<Vec<(SocketAddr, Fd)>> {
    let table = listening_inodes()?;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let inode = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok());
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Fd>().ok());
        if let (Some(inode), Some(fd)) = (inode, fd)
            && let Some(addr) = table.get(&inode)
        {
            out.push((*addr, fd));
        }
    }
    Ok(out)
}

/// Every listening TCP socket of this network namespace, by inode.
fn listening_inodes() -> io::Result<HashMap<u64, SocketAddr>> {
    let mut out = HashMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // A kernel without IPv6 has no tcp6 table.
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        out.extend(text.lines().skip(1).filter_map(parse_socket_line));
    }
    Ok(out)
}

/// One line of `/proc/net/tcp{,6}` in the LISTEN state: `sl local rem st … inode …`.
fn parse_socket_line(line: &str) -> Option<(u64, SocketAddr)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    // st 0A: TCP_LISTEN.
    if fields.get(3) != Some(&"0A") {
        return None;
    }
    let (ip, port) = fields.get(1)?.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((inode, SocketAddr::new(parse_ip(ip)?, port)))
}

/// The kernel prints an address as 32-bit words in host byte order, each `%08X`.
fn parse_ip(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| {
        hex.get(i * 8..i * 8 + 8)
            .and_then(|w| u32::from_str_radix(w, 16).ok())
            .map(u32::to_ne_bytes)
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// The pid a pid file names, if that process is alive.
pub fn running_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// The addresses the process named by `pid_file` listens on (none when it is not running).
pub fn held_by_running(pid_file: &Path) -> HashSet<SocketAddr> {
    running_pid(pid_file)
        .filter(|pid| *pid != std::process::id())
        .and_then(|pid| listeners_of(&pid.to_string()).ok())
        .map(|l| l.into_iter().map(|(a, _)| a).collect())
        .unwrap_or_default()
}

/// The addresses of `addrs` that cannot be listened on, with why; addresses in `held` (the
/// running instance's, to be handed over) are not tried.
pub fn unbindable(
    addrs: impl IntoIterator<Item = SocketAddr>,
    held: &HashSet<SocketAddr>,
) -> Vec<(SocketAddr, io::Error)> {
    addrs
        .into_iter()
        .filter(|a| !held.contains(a))
        .filter_map(|a| std::net::TcpListener::bind(a).err().map(|e| (a, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kernels_socket_table() {
        let v4 = "   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_socket_line(v4),
            Some((4242, "127.0.0.1:8080".parse().unwrap()))
        );
        let v6 = "   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
        assert_eq!(
            parse_socket_line(v6),
            Some((77, "[::1]:80".parse().unwrap()))
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_socket_line(&established), None);
    }

    #[test]
    fn finds_this_processs_own_listener() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let own = listeners_of("self").unwrap();
        assert!(own.iter().any(|(a, _)| *a == addr), "{own:?}");
        // Taken by us: not bindable, and says why; held by the running instance: not tried.
        let bad = unbindable([addr], &HashSet::new());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].1.kind(), io::ErrorKind::AddrInUse);
        assert!(unbindable([addr], &HashSet::from([addr])).is_empty());
    }
}
