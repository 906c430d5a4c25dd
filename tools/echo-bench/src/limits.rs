//! The limits on threads and processes of this machine, read from it: the
//! ceiling a thread-per-client (or process-per-client) server hits first is
//! whichever leaves the least room once what is already in use is taken
//! off, and it differs from machine to machine (systemd raises `pid_max`,
//! containers set `pids.max`), so none is hard-coded. The machine-wide
//! pools (`threads-max`, `pid_max`) are shared by every task that exists.

use nix::sys::resource::{Resource, getrlimit};
use procfs::{Current, LoadAverage};

/// One limit: what it is called, where it was read, and its value.
#[derive(Clone, Debug)]
pub struct Limit {
    pub name: &'static str,
    pub source: String,
    pub value_text: String,
    pub meaning: &'static str,
    /// How much of it is taken already, as text ("" when not read).
    pub in_use_text: String,
    /// How many threads of one server this limit leaves room for at most,
    /// what is in use taken off (None: no bound here, or not on threads).
    pub threads: Option<u64>,
}

/// The lowest bound on one server's threads, and the limit that sets it.
pub fn lowest(limits: &[Limit]) -> Option<(&Limit, u64)> {
    limits
        .iter()
        .filter_map(|limit| limit.threads.map(|threads| (limit, threads)))
        .min_by_key(|(_, threads)| *threads)
}

/// Reads every limit that bounds how many threads (tasks) can exist.
pub fn thread_limits() -> Vec<Limit> {
    // Every task that exists now (the last field of /proc/loadavg) holds a
    // task slot and a task id out of the machine-wide pools.
    let tasks = LoadAverage::current().ok().map(|load| u64::from(load.max));
    let mut limits = vec![
        sysctl(
            "kernel.threads-max",
            "/proc/sys/kernel/threads-max",
            "tasks (threads and processes) on the whole machine",
            tasks,
        ),
        sysctl(
            "kernel.pid_max",
            "/proc/sys/kernel/pid_max",
            "task ids: every thread and process takes one, from a pool shared by every task on the machine",
            tasks,
        ),
        sysctl(
            "vm.max_map_count",
            "/proc/sys/vm/max_map_count",
            "memory mappings per process: a thread's stack and its guard page take two (less the server's own few dozen)",
            None,
        ),
    ];
    let nproc = getrlimit(Resource::RLIMIT_NPROC).ok().map(|(soft, _)| soft);
    let root = nix::unistd::Uid::effective().is_root();
    limits.push(Limit {
        name: "RLIMIT_NPROC",
        in_use_text: String::new(),
        threads: nproc.filter(|&n| n != nix::libc::RLIM_INFINITY && !root),
        source: "getrlimit (ulimit -u)".into(),
        value_text: match nproc {
            Some(nix::libc::RLIM_INFINITY) => "unlimited".into(),
            Some(n) => n.to_string(),
            None => "unreadable".into(),
        },
        meaning: "tasks of this user (not enforced for root)",
    });
    let (source, text, current) = cgroup_pids_max();
    limits.push(Limit {
        name: "pids.max",
        in_use_text: current.map_or(String::new(), |n| n.to_string()),
        threads: text
            .parse::<u64>()
            .ok()
            .map(|max| max.saturating_sub(current.unwrap_or(0))),
        source,
        value_text: text,
        meaning: "tasks in this cgroup (container, systemd unit)",
    });
    let nofile = getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(_, hard)| hard);
    limits.push(Limit {
        name: "RLIMIT_NOFILE (hard)",
        in_use_text: String::new(),
        threads: None,
        source: "getrlimit (ulimit -Hn)".into(),
        value_text: nofile.map_or("unreadable".into(), |n| n.to_string()),
        meaning: "open descriptors per process: one per client in a server that keeps its clients' sockets in one process (lessons 4 and 5, tokio), not in the fork server or ncat, whose parent closes each client's socket once a child has it; the benchmark raises the servers' soft limit to it",
    });
    limits
}

/// A sysctl of which `in_use` (tasks that exist now) is already taken.
fn sysctl(name: &'static str, path: &str, meaning: &'static str, in_use: Option<u64>) -> Limit {
    let text = std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|_| "unreadable".into());
    let value: Option<u64> = text.parse().ok();
    Limit {
        name,
        source: path.into(),
        in_use_text: in_use.map_or(String::new(), |n| format!("{n} tasks")),
        // Two mappings per thread: its stack and the guard page below it.
        threads: if name == "vm.max_map_count" {
            value.map(|maps| maps / 2)
        } else {
            value.map(|value| value.saturating_sub(in_use.unwrap_or(0)))
        },
        value_text: text,
        meaning,
    }
}

/// This process's cgroup `pids.max` (where, and its text) and its
/// `pids.current`: cgroup v2 (`0::/path`), else the v1 `pids` hierarchy.
fn cgroup_pids_max() -> (String, String, Option<u64>) {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut candidates = Vec::new();
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            candidates.push(format!("/sys/fs/cgroup{path}/pids.max"));
        } else if controllers.split(',').any(|c| c == "pids") {
            candidates.push(format!("/sys/fs/cgroup/pids{path}/pids.max"));
        }
    }
    for path in candidates {
        let path = path.replace("//", "/");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let current = std::fs::read_to_string(path.replace("pids.max", "pids.current"))
                .ok()
                .and_then(|current| current.trim().parse().ok());
            return (path, text.trim().to_owned(), current);
        }
    }
    // The root cgroup has no pids.max: nothing beyond the machine's limits.
    (
        "/sys/fs/cgroup/…/pids.max".into(),
        "none (root cgroup, or no pids controller)".into(),
        None,
    )
}
