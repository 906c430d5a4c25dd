//! Packet captures: tcpdump running inside a host, one text line per packet,
//! which a test can wait on ("until the RST shows") and annotate ("the
//! server is killed here"), then render as a stable text for the book.
//!
//! Stable means the same file on every run: tcpdump prints no times (`-t`),
//! the hosts send no TCP timestamps (see `DEFAULT_SYSCTLS`), and
//! [`normalize`] replaces what is random by design: each side's initial
//! sequence number, the client's ephemeral port and the IP identification.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::topology::EPHEMERAL_PORTS;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a wait for a packet (or for tcpdump to start or stop) may take.
pub const CAPTURE_DEADLINE: Duration = Duration::from_secs(10);

/// What a capture printed so far.
#[derive(Default)]
struct Lines {
    /// Packet lines, and notes (starting with `# `), in order.
    entries: Vec<String>,
    /// How many entries `wait_for` has consumed.
    seen: usize,
    stderr: String,
    stdout_closed: bool,
}

#[derive(Default)]
struct Shared {
    lines: Mutex<Lines>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Lines> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running tcpdump. Dropping it kills tcpdump.
pub struct Capture {
    name: String,
    child: Child,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("name", &self.name).finish()
    }
}

impl Capture {
    /// Starts `command` (a tcpdump printing to stdout) and waits until it
    /// says it is listening, so no packet sent afterwards is missed.
    pub(crate) fn start(mut command: Command, name: &str) -> Result<Capture> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {name}: is tcpdump installed?"))?;
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().context("tcpdump's stdout")?;
        let stderr = child.stderr.take().context("tcpdump's stderr")?;
        let out = Arc::clone(&shared);
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut lines = out.lock();
                // With -v a packet takes several lines; the others start
                // with blanks. One packet, one entry.
                match lines.entries.last_mut() {
                    Some(last) if line.starts_with([' ', '\t']) && !last.starts_with("# ") => {
                        last.push(' ');
                        last.push_str(line.trim());
                    }
                    _ => lines.entries.push(line),
                }
                drop(lines);
                out.changed.notify_all();
            }
            out.lock().stdout_closed = true;
            out.changed.notify_all();
        });
        let err = Arc::clone(&shared);
        thread::spawn(move || {
            let mut stderr = stderr;
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buffer) {
                err.lock()
                    .stderr
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
                err.changed.notify_all();
            }
        });
        let capture = Capture {
            name: name.to_owned(),
            child,
            shared,
        };
        capture.wait_until(|lines| lines.stderr.contains("listening on"), "to start")?;
        Ok(capture)
    }

    /// Waits for a packet line containing `needle`, past the lines earlier
    /// waits consumed; returns it.
    pub fn wait_for(&self, needle: &str) -> Result<String> {
        let mut found = None;
        self.wait_until(
            |lines| {
                let start = lines.seen;
                let normalized = normalize_lines(&lines.entries);
                if let Some(at) = normalized[start..]
                    .iter()
                    .position(|line| !line.starts_with("# ") && line.contains(needle))
                {
                    lines.seen = start + at + 1;
                    found = Some(normalized[start + at].clone());
                    return true;
                }
                false
            },
            &format!("to show a packet with {needle:?}"),
        )?;
        Ok(found.unwrap_or_default())
    }

    /// Waits until `count` packet lines have been printed in all.
    pub fn wait_for_count(&self, count: usize) -> Result<()> {
        self.wait_until(
            |lines| {
                lines
                    .entries
                    .iter()
                    .filter(|l| !l.starts_with("# "))
                    .count()
                    >= count
            },
            &format!("to show {count} packets"),
        )
    }

    /// Adds a note (`# text`) after the packets printed so far: what the
    /// test did, or what `ss` showed, at that point of the capture.
    pub fn note(&self, text: &str) {
        self.shared.lock().entries.push(format!("# {text}"));
    }

    /// The packet lines (normalized, see [`normalize`]) and notes so far.
    pub fn lines(&self) -> Vec<String> {
        normalize_lines(&self.shared.lock().entries)
    }

    /// Stops tcpdump and returns every packet line (normalized) and note.
    pub fn finish(mut self) -> Result<Vec<String>> {
        // `ip netns exec` replaced itself with tcpdump: same pid. SIGINT
        // makes tcpdump flush its output and exit.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        self.wait_until(|lines| lines.stdout_closed, "to stop")?;
        let _ = self.child.wait();
        // A capture that missed packets would show the book a wire that
        // never was.
        self.wait_until(
            |lines| lines.stderr.contains("dropped by kernel"),
            "to report",
        )?;
        let stderr = self.shared.lock().stderr.clone();
        let dropped = stderr
            .lines()
            .find_map(|line| line.strip_suffix(" packets dropped by kernel"))
            .and_then(|count| count.trim().parse::<u64>().ok());
        if dropped != Some(0) {
            bail!("{} lost packets: {}", self.name, stderr.trim());
        }
        Ok(self.lines())
    }

    fn wait_until(&self, mut done: impl FnMut(&mut Lines) -> bool, what: &str) -> Result<()> {
        let deadline = Instant::now() + CAPTURE_DEADLINE;
        let mut lines = self.shared.lock();
        loop {
            if done(&mut lines) {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline || (lines.stdout_closed && what.starts_with("to show")) {
                bail!(
                    "{} did not wait {what} within {CAPTURE_DEADLINE:?}\n--- printed:\n{}\n--- stderr:\n{}",
                    self.name,
                    lines.entries.join("\n"),
                    lines.stderr.trim()
                );
            }
            lines = self
                .shared
                .changed
                .wait_timeout(lines, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Renders captured lines so the text is the same on every run:
///
/// - TCP sequence and acknowledgement numbers become relative to each
///   side's initial sequence number (ISN, random by design), which its SYN
///   carries: the SYN is `seq 0`, the first data byte 1;
/// - every port in [`EPHEMERAL_PORTS`] (one the kernel picked at random for
///   a client) becomes 50001, 50002… in order of appearance;
/// - every IP identification (`id N`, with `-v`) becomes 1, 2… in order of
///   appearance, so the fragments of one datagram still share theirs.
///
/// Notes (lines starting with `# `) are left alone. Returns one line per
/// entry, each ending in a newline.
pub fn normalize(lines: &[String]) -> String {
    normalize_lines(lines)
        .into_iter()
        .map(|line| line + "\n")
        .collect()
}

fn normalize_lines(lines: &[String]) -> Vec<String> {
    let mut ports: HashMap<String, String> = HashMap::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(lines.len());
    // Each endpoint's initial sequence number, from its SYN.
    let mut isns: HashMap<String, u32> = HashMap::new();
    for line in lines {
        let mut line = line.clone();
        if let Some((src, dst)) = tcp_endpoints(&line) {
            if line.contains("Flags [S")
                && let Some(isn) = number_after(&line, "seq ")
            {
                isns.insert(src.clone(), isn);
            }
            if let Some(&isn) = isns.get(&src) {
                line = replace_number_after(&line, "seq ", |n| relative(n, isn));
                line = replace_number_after(&line, ":", |n| relative(n, isn));
            }
            if let Some(&isn) = isns.get(&dst) {
                line = replace_number_after(&line, "ack ", |n| relative(n, isn));
            }
        }
        if !line.starts_with("# ") {
            line = replace_number_after(&line, "id ", |id| {
                let next = (ids.len() + 1).to_string();
                ids.entry(id.to_owned()).or_insert(next).clone()
            });
            line = renumber_ports(&line, &mut ports);
        }
        out.push(line);
    }
    out
}

/// The source and destination (`a.b.c.d.port`) of a TCP line of tcpdump.
fn tcp_endpoints(line: &str) -> Option<(String, String)> {
    if !line.contains(" Flags [") {
        return None;
    }
    let mut words = line.split(' ');
    let src = words.find(|word| word.matches('.').count() == 4)?;
    let dst = words.nth(1)?.trim_end_matches(':');
    Some((src.to_owned(), dst.to_owned()))
}

fn number_after(line: &str, label: &str) -> Option<u32> {
    let at = line.find(label)? + label.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// `n - isn` in sequence space (which wraps at 2^32).
fn relative(n: &str, isn: u32) -> String {
    n.parse::<u32>()
        .map_or_else(|_| n.to_owned(), |n| n.wrapping_sub(isn).to_string())
}

/// `line` with the decimal number after each `label` replaced by `with(n)`.
fn replace_number_after(line: &str, label: &str, mut with: impl FnMut(&str) -> String) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find(label) {
        let (before, after) = rest.split_at(at + label.len());
        out.push_str(before);
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push_str(&with(&after[..digits]));
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// Replaces the port of each `a.b.c.d.PORT` word in [`EPHEMERAL_PORTS`].
fn renumber_ports(line: &str, ports: &mut HashMap<String, String>) -> String {
    line.split(' ')
        .map(|word| {
            let bare = word.trim_end_matches([':', ',']);
            let parts: Vec<&str> = bare.split('.').collect();
            let is_endpoint = parts.len() == 5
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !is_endpoint {
                return word.to_owned();
            }
            let port = parts[4];
            if !port
                .parse::<u16>()
                .is_ok_and(|p| EPHEMERAL_PORTS.contains(&p))
            {
                return word.to_owned();
            }
            let next = (50001 + ports.len()).to_string();
            let new_port = ports.entry(port.to_owned()).or_insert(next).clone();
            format!("{}.{new_port}{}", parts[..4].join("."), &word[bare.len()..])
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_hides_what_is_random_by_design() {
        let lines = [
            "IP 192.168.126.128.43210 > 192.168.126.129.8890: Flags [S], seq 3735928559, win 64240, length 0",
            "IP 192.168.126.129.8890 > 192.168.126.128.43210: Flags [S.], seq 123, ack 3735928560, win 65160, length 0",
            "IP 192.168.126.128.43210 > 192.168.126.129.8890: Flags [P.], seq 3735928560:3735928566, ack 124, win 502, length 0",
            "IP (tos 0x0, ttl 64, id 4711, offset 0, flags [+], proto UDP (17), length 1500)",
            "IP (tos 0x0, ttl 64, id 4711, offset 1480, flags [+], proto UDP (17), length 1500)",
            "# ss: TIME-WAIT 192.168.126.128.43210",
        ]
        .map(String::from);
        assert_eq!(
            normalize(&lines),
            "IP 192.168.126.128.50001 > 192.168.126.129.8890: Flags [S], seq 0, win 64240, length 0\n\
             IP 192.168.126.129.8890 > 192.168.126.128.50001: Flags [S.], seq 0, ack 1, win 65160, length 0\n\
             IP 192.168.126.128.50001 > 192.168.126.129.8890: Flags [P.], seq 1:7, ack 1, win 502, length 0\n\
             IP (tos 0x0, ttl 64, id 1, offset 0, flags [+], proto UDP (17), length 1500)\n\
             IP (tos 0x0, ttl 64, id 1, offset 1480, flags [+], proto UDP (17), length 1500)\n\
             # ss: TIME-WAIT 192.168.126.128.43210\n"
        );
    }
}
