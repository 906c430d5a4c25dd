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
                out.lock().entries.push(line);
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
                if let Some(at) = lines.entries[start..]
                    .iter()
                    .position(|line| !line.starts_with("# ") && line.contains(needle))
                {
                    lines.seen = start + at + 1;
                    found = Some(lines.entries[start + at].clone());
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

    /// The packet lines and notes so far.
    pub fn lines(&self) -> Vec<String> {
        self.shared.lock().entries.clone()
    }

    /// Stops tcpdump and returns every packet line and note.
    pub fn finish(mut self) -> Result<Vec<String>> {
        // `ip netns exec` replaced itself with tcpdump: same pid. SIGINT
        // makes tcpdump flush its output and exit.
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT);
        self.wait_until(|lines| lines.stdout_closed, "to stop")?;
        let _ = self.child.wait();
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
            if now >= deadline || (lines.stdout_closed && !what.starts_with("to stop")) {
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
/// - a TCP SYN's sequence number (the side's random initial sequence
///   number, ISN) becomes 0, and the ack of the SYN-ACK 1, as tcpdump
///   already shows all later numbers relative to the ISN;
/// - every port not in `fixed_ports` (a client's ephemeral port, picked at
///   random) becomes 50001, 50002… in order of appearance;
/// - every IP identification (`id N`, with `-v`) becomes 1, 2… in order of
///   appearance, so the fragments of one datagram still share theirs.
pub fn normalize(lines: &[String], fixed_ports: &[u16]) -> String {
    let mut ports: HashMap<String, String> = HashMap::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut text = String::new();
    for line in lines {
        let mut line = line.clone();
        if line.contains("Flags [S]") || line.contains("Flags [S.]") {
            line = replace_number_after(&line, "seq ", |_| "0".into());
            if line.contains("Flags [S.]") {
                line = replace_number_after(&line, "ack ", |_| "1".into());
            }
        }
        if !line.starts_with("# ") {
            line = replace_number_after(&line, "id ", |id| {
                let next = (ids.len() + 1).to_string();
                ids.entry(id.to_owned()).or_insert(next).clone()
            });
            line = renumber_ports(&line, fixed_ports, &mut ports);
        }
        text.push_str(&line);
        text.push('\n');
    }
    text
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

/// Replaces the port of each `a.b.c.d.PORT` word not in `fixed`.
fn renumber_ports(line: &str, fixed: &[u16], ports: &mut HashMap<String, String>) -> String {
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
            if port.parse::<u16>().is_ok_and(|p| fixed.contains(&p)) {
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
            "IP (tos 0x0, ttl 64, id 4711, offset 0, flags [+], proto UDP (17), length 1500)",
            "IP (tos 0x0, ttl 64, id 4711, offset 1480, flags [+], proto UDP (17), length 1500)",
            "# ss: TIME-WAIT 192.168.126.128.43210",
        ]
        .map(String::from);
        assert_eq!(
            normalize(&lines, &[8890]),
            "IP 192.168.126.128.50001 > 192.168.126.129.8890: Flags [S], seq 0, win 64240, length 0\n\
             IP 192.168.126.129.8890 > 192.168.126.128.50001: Flags [S.], seq 0, ack 1, win 65160, length 0\n\
             IP (tos 0x0, ttl 64, id 1, offset 0, flags [+], proto UDP (17), length 1500)\n\
             IP (tos 0x0, ttl 64, id 1, offset 1480, flags [+], proto UDP (17), length 1500)\n\
             # ss: TIME-WAIT 192.168.126.128.43210\n"
        );
    }
}
