//! Process facts from the operating system: resident memory and the file-descriptor limit.

use anyhow::{Context as _, anyhow};

/// Resident set size (`VmRSS`) of process `pid`, or of this process, in KiB.
pub fn rss_kib(pid: Option<u32>) -> anyhow::Result<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS in {path}"))
}

/// Raises this process's soft `RLIMIT_NOFILE` towards `want` (as far as the hard limit allows;
/// child processes inherit it) and returns the limit now in force.
pub fn raise_fd_limit(want: u64) -> anyhow::Result<u64> {
    let got = rlimit::increase_nofile_limit(want).context("raising RLIMIT_NOFILE")?;
    Ok(got)
}

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, fixed at 100 by the Linux ABI).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system) process `pid`, or this process, has used so far, in seconds.
pub fn cpu_seconds(pid: Option<u32>) -> anyhow::Result<f64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("malformed {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1; `rest` starts at field 3.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i - 3)
            .ok_or_else(|| anyhow!("short {path}"))?
            .parse::<f64>()?)
    };
    Ok((ticks(14)? + ticks(15)?) / USER_HZ)
}
