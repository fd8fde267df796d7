//! What the bench reads about processes from /proc: memory (RSS, PSS, anonymous), CPU time,
//! children, and the kernel's UDP receive drops.

use std::time::Duration;

use anyhow::{Context, Result};

/// Memory of a process from /proc/<pid>/smaps_rollup, in KiB. PSS shares each shared page
/// out among the processes mapping it, so PSS sums over processes; RSS sums do not.
/// Anonymous memory (heap, stacks) is what each further process costs on its own: the
/// binary's pages, "private" too while one process maps them, are shared by the next.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub pss: u64,
    pub anonymous: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Result<Self> {
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
        let field = |key: &str| -> u64 {
            rollup
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        Ok(Self { rss: field("Rss:"), pss: field("Pss:"), anonymous: field("Anonymous:") })
    }

    pub fn sum(pids: &[u32]) -> Result<Self> {
        let mut m = Self::default();
        for &pid in pids {
            let one = Self::of(pid)?;
            (m.rss, m.pss, m.anonymous) = (m.rss + one.rss, m.pss + one.pss, m.anonymous + one.anonymous);
        }
        Ok(m)
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The process and all its descendants (the seed's ffmpeg children count as its own).
pub fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..])
            && let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok())
        {
            parents.push((pid, ppid));
        }
    }
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let p = all[i];
        all.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    all
}

/// User + system CPU time of the processes (those gone by now count nothing).
pub fn cpu(pids: &[u32]) -> Duration {
    let one = |pid: u32| -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = after.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    };
    // USER_HZ is 100 on Linux.
    Duration::from_millis(pids.iter().filter_map(|p| one(*p)).sum::<u64>() * 10)
}

/// UDP datagrams the kernel dropped for a full receive buffer (machine-wide), from
/// /proc/net/snmp: frames the simulator never saw are not the player's fault.
pub fn udp_receive_drops() -> Result<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp")?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next().context("no Udp: header")?, udp.next().context("no Udp: values")?);
    let at = names.split_whitespace().position(|n| n == "RcvbufErrors").context("no RcvbufErrors")?;
    Ok(values.split_whitespace().nth(at).context("short Udp: line")?.parse()?)
}
