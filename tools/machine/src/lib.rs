//! The machine a measurement ran on.
//!
//! A figure in the book is only as good as the machine and the moment that
//! produced it, so `just bench` and `just lab matrix` each open their report
//! with the CPU, the cores, the kernel, the date and how busy the machine
//! was. Each piece is read here once, from /proc; the reports compose them.

/// The CPU's model name, from /proc/cpuinfo.
pub fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "an unknown CPU".into())
}

/// The CPUs this process may run on (0 if it cannot tell). Read it before
/// pinning the process to one CPU.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// The kernel's release, e.g. "6.18.44".
pub fn kernel() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    release.trim().to_owned()
}

/// The machine's memory in GiB (`MemTotal` of /proc/meminfo), if readable.
pub fn memory_gib() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())?;
    Some(kib as f64 / 1024.0 / 1024.0)
}

/// Now, as "2026-11-30 01:39 UTC".
pub fn utc_date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The first `count` load averages of /proc/loadavg (1, 5 and 15 minutes),
/// space-separated; "unknown" when it cannot be read.
pub fn load_average(count: usize) -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let fields: Vec<&str> = loadavg.split_whitespace().take(count).collect();
    if fields.is_empty() {
        "unknown".into()
    } else {
        fields.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_machine() {
        assert!(cores() >= 1);
        assert!(!kernel().is_empty());
        assert_eq!(load_average(3).split(' ').count(), 3);
        assert_eq!(load_average(1).split(' ').count(), 1);
        assert!(utc_date().ends_with(" UTC"), "{}", utc_date());
    }
}
