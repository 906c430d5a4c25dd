//! What a held connection costs the machine, counted as far as /proc
//! allows.
//!
//! A server's resident memory is only part of it. Each thread also has a
//! kernel stack (16 KiB on x86-64), which no process's RSS includes: it
//! shows in `KernelStack` of /proc/meminfo. Each process has page tables
//! (`PageTables`), also outside every RSS and PSS. Each socket has buffers,
//! counted for all TCP sockets of the machine in /proc/net/sockstat (`mem`,
//! in pages). And a server that forks shares pages between its processes,
//! so their RSS added up would count those pages many times: the
//! proportional set size (PSS, /proc/PID/smaps_rollup) splits each shared
//! page between the processes that map it, so the sum over the server's
//! processes counts every page once. These machine-wide readings, before
//! and after, with nothing else changing, differ by the held connections'.
//!
//! Not in the total: the kernel's slab objects per task (task_struct,
//! mm_struct, files, sighand, signal …) and per socket (the socket and its
//! inode). They show in /proc/meminfo's `SUnreclaim`, which the report
//! gives beside the total, but that reading mixes both ends' sockets with
//! the server's tasks and anything else the machine did meanwhile.

use std::collections::HashMap;

use anyhow::{Context, Result};
use procfs::process::{Process, all_processes};
use procfs::{Current, Meminfo};
use serde::Serialize;

/// Readings of the whole machine and of one server's processes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Snapshot {
    /// KernelStack of /proc/meminfo, KiB.
    pub kernel_stack_kib: u64,
    /// PageTables of /proc/meminfo, KiB.
    pub page_tables_kib: u64,
    /// SUnreclaim of /proc/meminfo (slab objects the kernel cannot free
    /// under pressure: task_struct, mm_struct, files, sighand, sockets …), KiB.
    pub slab_unreclaimable_kib: u64,
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
    let meminfo = Meminfo::current().context("cannot read /proc/meminfo")?;
    let kib = |bytes: Option<u64>, name: &str| {
        bytes
            .map(|bytes| bytes / 1024)
            .with_context(|| format!("no {name} in /proc/meminfo"))
    };
    let sockstat =
        std::fs::read_to_string("/proc/net/sockstat").context("cannot read /proc/net/sockstat")?;
    // procfs does not read sockstat: the TCP line is "TCP: inuse N … mem PAGES".
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
    let rss_kib = Process::new(pid as i32)
        .and_then(|server| server.status())
        .with_context(|| format!("cannot read /proc/{pid}/status (is the server running?)"))?
        .vmrss
        .context("no VmRSS")?;
    let mut snapshot = Snapshot {
        kernel_stack_kib: kib(meminfo.kernel_stack, "KernelStack")?,
        page_tables_kib: kib(meminfo.page_tables, "PageTables")?,
        slab_unreclaimable_kib: kib(meminfo.s_unreclaim, "SUnreclaim")?,
        tcp_buffers_kib: tcp_pages * procfs::page_size() / 1024,
        rss_kib,
        ..Snapshot::default()
    };
    for member in tree(pid) {
        // A process may exit between the listing and these reads: skip it.
        let Ok(process) = Process::new(member as i32) else {
            continue;
        };
        let (Ok(status), Ok(rollup)) = (process.status(), process.smaps_rollup()) else {
            continue;
        };
        snapshot.processes += 1;
        snapshot.threads += status.threads;
        snapshot.pss_kib += rollup
            .memory_map_rollup
            .iter()
            .filter_map(|map| map.extension.map.get("Pss"))
            .sum::<u64>()
            / 1024;
    }
    Ok(snapshot)
}

/// `pid` and all its descendants, from the parent ids in /proc/*/stat.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for process in all_processes().into_iter().flatten().flatten() {
        // A process may exit between the listing and this read: skip it.
        if let Ok(stat) = process.stat() {
            children
                .entry(stat.ppid as u32)
                .or_default()
                .push(stat.pid as u32);
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
        Self::machine_wide(self.after.kernel_stack_kib, self.before.kernel_stack_kib)
    }
    /// Page tables: a forked process has its own, threads share them.
    pub fn page_tables_kib(&self) -> f64 {
        Self::machine_wide(self.after.page_tables_kib, self.before.page_tables_kib)
    }
    /// Unreclaimable slab, machine-wide: per-task objects and both ends'
    /// socket objects. Shown beside the total, not in it (see the module
    /// comment).
    pub fn slab_kib(&self) -> f64 {
        Self::machine_wide(
            self.after.slab_unreclaimable_kib,
            self.before.slab_unreclaimable_kib,
        )
    }
    /// Socket buffers of both ends of every connection (client and server
    /// sockets are all on this machine).
    pub fn tcp_buffers_kib(&self) -> f64 {
        Self::machine_wide(self.after.tcp_buffers_kib, self.before.tcp_buffers_kib)
    }
    /// The change of a machine-wide reading, 0 when it fell: what other
    /// programs freed meanwhile is noise, not something the server gave
    /// back, and a negative size would only mislead.
    fn machine_wide(after: u64, before: u64) -> f64 {
        Self::delta(after, before).max(0.0)
    }
    /// Which machine-wide readings fell during the run (and so show as 0):
    /// kernel stacks, page tables, socket buffers, slab.
    pub fn fell(&self) -> [bool; 4] {
        let (a, b) = (&self.after, &self.before);
        [
            a.kernel_stack_kib < b.kernel_stack_kib,
            a.page_tables_kib < b.page_tables_kib,
            a.tcp_buffers_kib < b.tcp_buffers_kib,
            a.slab_unreclaimable_kib < b.slab_unreclaimable_kib,
        ]
    }
    /// What is charged to the server: its memory, the kernel stacks, the
    /// page tables, and half the socket buffers (its end of each
    /// connection; both ends did the same work, one message each way).
    pub fn total_kib(&self) -> f64 {
        self.user_kib()
            + self.kernel_stack_kib()
            + self.page_tables_kib()
            + self.tcp_buffers_kib() / 2.0
    }
    /// The total over the connections the server holds: those it served
    /// (opened but never served, as ncat's beyond its limit, cost it
    /// nothing and must not dilute the figure).
    pub fn per_connection_kib(&self) -> f64 {
        self.total_kib() / self.held()
    }
    /// Connections the server took and echoed, and holds (at least 1).
    pub fn held(&self) -> f64 {
        self.served.max(1) as f64
    }
}
