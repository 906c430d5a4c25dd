//! What a held connection costs the machine, counted in full.
//!
//! A server's resident memory is only part of it. Each thread also has a
//! kernel stack (16 KiB on x86-64), which no process's RSS includes: it
//! shows in `KernelStack` of /proc/meminfo. Each socket has buffers, counted
//! for all TCP sockets of the machine in /proc/net/sockstat (`mem`, in
//! pages). And a server that forks shares pages between its processes, so
//! their RSS added up would count those pages many times: the proportional
//! set size (PSS, /proc/PID/smaps_rollup) splits each shared page between
//! the processes that map it, so the sum over the server's processes counts
//! every page once. The KernelStack and sockstat readings are machine-wide:
//! before and after, with nothing else changing, their difference is the
//! held connections'.

use std::collections::HashMap;

use anyhow::{Context, Result};
use serde::Serialize;

/// Readings of the whole machine and of one server's processes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Snapshot {
    /// KernelStack of /proc/meminfo, KiB.
    pub kernel_stack_kib: u64,
    /// TCP `mem` of /proc/net/sockstat, in KiB.
    pub tcp_buffers_kib: u64,
    /// The server's main process: VmRSS, KiB.
    pub rss_kib: u64,
    /// PSS summed over the server and all its descendants, KiB.
    pub pss_kib: u64,
    /// Processes in the server's tree, and threads in all of them.
    pub processes: u64,
    pub threads: u64,
}

/// Reads the machine and the process tree rooted at `pid`.
pub fn snapshot(pid: u32) -> Result<Snapshot> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    let kernel_stack_kib =
        field(&meminfo, "KernelStack:").context("no KernelStack in /proc/meminfo")?;
    let sockstat =
        std::fs::read_to_string("/proc/net/sockstat").context("cannot read /proc/net/sockstat")?;
    let tcp_pages = sockstat
        .lines()
        .find_map(|line| line.strip_prefix("TCP:"))
        .and_then(|rest| {
            let words: Vec<&str> = rest.split_whitespace().collect();
            words
                .windows(2)
                .find(|pair| pair[0] == "mem")
                .and_then(|pair| pair[1].parse::<u64>().ok())
        })
        .context("no TCP mem in /proc/net/sockstat")?;
    let page_kib = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4, |bytes| bytes as u64 / 1024);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status (is the server running?)"))?;
    let rss_kib = field(&status, "VmRSS:").context("no VmRSS")?;
    let mut snapshot = Snapshot {
        kernel_stack_kib,
        tcp_buffers_kib: tcp_pages * page_kib,
        rss_kib,
        ..Snapshot::default()
    };
    for member in tree(pid) {
        // A process may exit between the listing and this read: skip it.
        let Ok(status) = std::fs::read_to_string(format!("/proc/{member}/status")) else {
            continue;
        };
        let Ok(rollup) = std::fs::read_to_string(format!("/proc/{member}/smaps_rollup")) else {
            continue;
        };
        snapshot.processes += 1;
        snapshot.threads += field(&status, "Threads:").unwrap_or(0);
        snapshot.pss_kib += field(&rollup, "Pss:").unwrap_or(0);
    }
    Ok(snapshot)
}

/// `pid` and all its descendants, from the parent ids in /proc/*/stat.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            // The command name may hold spaces and parentheses: the fields
            // after it start after the last ')'.
            let parent = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok());
            if let Some(parent) = parent {
                children.entry(parent).or_default().push(child);
            }
        }
    }
    let mut members = vec![pid];
    let mut next = 0;
    while next < members.len() {
        if let Some(kids) = children.get(&members[next]) {
            members.extend(kids);
        }
        next += 1;
    }
    members
}

/// The number after `name` in a "Name:   1234 kB" style file.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// What `connections` held connections cost, from snapshots before and after.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Cost {
    pub connections: usize,
    pub served: u64,
    pub failed: u64,
    pub before: Snapshot,
    pub after: Snapshot,
}

impl Cost {
    fn delta(after: u64, before: u64) -> f64 {
        after as f64 - before as f64
    }
    /// The server's own memory (PSS of its processes), KiB.
    pub fn user_kib(&self) -> f64 {
        Self::delta(self.after.pss_kib, self.before.pss_kib)
    }
    pub fn kernel_stack_kib(&self) -> f64 {
        Self::delta(self.after.kernel_stack_kib, self.before.kernel_stack_kib)
    }
    /// Socket buffers of both ends of every connection (client and server
    /// sockets are all on this machine).
    pub fn tcp_buffers_kib(&self) -> f64 {
        Self::delta(self.after.tcp_buffers_kib, self.before.tcp_buffers_kib)
    }
    /// Everything charged to the server: its memory, the kernel stacks, and
    /// half the socket buffers (its end of each connection; both ends did
    /// the same work, one message each way).
    pub fn total_kib(&self) -> f64 {
        self.user_kib() + self.kernel_stack_kib() + self.tcp_buffers_kib() / 2.0
    }
    pub fn per_connection_kib(&self) -> f64 {
        self.total_kib() / self.connections.max(1) as f64
    }
}
