//! What the server costs, read from /proc: resident memory, threads, and
//! open file descriptors of a process.

use anyhow::{Context, Result};
use procfs::process::Process;
use serde::Serialize;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct ProcStats {
    /// Resident set size (VmRSS), in KiB.
    pub rss_kib: u64,
    pub threads: u64,
    pub open_fds: u64,
}

/// Reads the stats of process `pid`.
pub fn read(pid: u32) -> Result<ProcStats> {
    let process = Process::new(pid as i32)
        .with_context(|| format!("no process {pid} (is the server running?)"))?;
    let status = process
        .status()
        .with_context(|| format!("cannot read /proc/{pid}/status (is the server running?)"))?;
    let open_fds = process
        .fd_count()
        .with_context(|| format!("cannot list /proc/{pid}/fd"))? as u64;
    Ok(ProcStats {
        rss_kib: status
            .vmrss
            .with_context(|| format!("no VmRSS in /proc/{pid}/status"))?,
        threads: status.threads,
        open_fds,
    })
}

/// Waits (at most `limit`) until the stats stop changing: a server's
/// threads exit a moment after their clients close.
pub fn settled(pid: u32, limit: std::time::Duration) -> Result<ProcStats> {
    let deadline = std::time::Instant::now() + limit;
    let mut last = read(pid)?;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = read(pid)?;
        if (now.threads, now.open_fds) == (last.threads, last.open_fds)
            || std::time::Instant::now() >= deadline
        {
            return Ok(now);
        }
        last = now;
    }
}
