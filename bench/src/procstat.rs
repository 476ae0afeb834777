//! What the services cost: CPU seconds and RSS from `/proc`, and the host's steal time.

use std::{collections::HashSet, fs};

use anyhow::{Context, bail};

use crate::cli::Endpoints;

/// Clock ticks per second of `/proc/<pid>/stat` times (USER_HZ, 100 on every mainstream
/// Linux build; reading it would take `sysconf`).
const CLK_TCK: f64 = 100.0;

/// A process to watch.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    pub pid: u32,
}

/// `name=pid` pairs as given, or else each service found by its listening gRPC port.
/// The load generator itself is always added as `bench`.
pub fn watched(endpoints: &Endpoints, explicit: &[String]) -> anyhow::Result<Vec<Watched>> {
    let mut list = Vec::new();
    if explicit.is_empty() {
        let services = [
            ("user-service", endpoints.user_grpc),
            ("message-service", endpoints.message_grpc),
            ("notification-service", endpoints.notification_grpc),
            ("frontend-service", endpoints.frontend_grpc),
        ];
        for (name, port) in services {
            if let Some(pid) = pid_listening_on(port) {
                list.push(Watched {
                    name: name.to_owned(),
                    pid,
                });
            }
        }
    } else {
        for pair in explicit {
            let Some((name, pid)) = pair.split_once('=') else {
                bail!("--pids wants name=pid, got {pair:?}");
            };
            let pid = pid
                .trim()
                .parse()
                .with_context(|| format!("--pids: {pid:?} is not a pid"))?;
            list.push(Watched {
                name: name.trim().to_owned(),
                pid,
            });
        }
    }
    list.push(Watched {
        name: "bench".to_owned(),
        pid: std::process::id(),
    });
    Ok(list)
}

/// The process holding the socket listening on TCP `port` (any address), from
/// `/proc/net/tcp{,6}` and the processes' fd links.
fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if listening && local_port == Some(port) {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.contains(target.to_string_lossy().as_ref())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// utime + stime of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLK_TCK)
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in MiB.
pub fn status_mb(pid: u32, key: &str) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let kb: f64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// The host's steal time so far, summed over all CPUs, in seconds.
pub fn steal_seconds() -> f64 {
    fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?;
            // cpu user nice system idle iowait irq softirq steal ...
            line.split_whitespace().nth(8)?.parse::<f64>().ok()
        })
        .map_or(0.0, |ticks| ticks / CLK_TCK)
}
