//! Packet captures: tcpdump running inside a host. It records every packet
//! to a pcap file (`-w`), read back with `pcap-file` and parsed with
//! `etherparse` ([`Packet`]: no test reads hex dumps), and prints one text
//! line per packet (`--print`), which a test can wait on ("until the RST
//! shows") and annotate ("the server is killed here"), then render as a
//! stable text for the book.
//!
//! tcpdump runs as a [`testkit::Running`], the workspace's one child process
//! with reader threads and bounded waits. netlab depends on testkit for it:
//! netlab's library exists for the tests and the book's captures (the `lab`
//! binary uses none of it), and testkit does not depend on netlab.
//!
//! Stable means the same file on every run: tcpdump prints no times (`-t`),
//! the hosts send no TCP timestamps (see `DEFAULT_SYSCTLS`), and
//! [`normalize`] replaces what is random by design: each side's initial
//! sequence number, the client's ephemeral port and the IP identification.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use etherparse::{Icmpv4Type, NetSlice, SlicedPacket, TransportSlice, icmpv4};
use nix::sys::signal::Signal;
use pcap_file::pcap::PcapReader;
use testkit::Running;

use crate::topology::EPHEMERAL_PORTS;

/// How long a wait for a packet (or for tcpdump to start or stop) may take.
pub const CAPTURE_DEADLINE: Duration = Duration::from_secs(10);

/// Numbers the pcap files of one process.
static NEXT_FILE: AtomicU32 = AtomicU32::new(0);

/// One packet of a capture, parsed from the pcap file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// tcpdump's line for it, as printed (not normalized).
    pub line: String,
    /// The IPv4 packet, from its header on (the link header stripped).
    pub ip: Vec<u8>,
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    pub contents: Contents,
}

/// What an IPv4 packet carries, as far as the lab's tests look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contents {
    /// A whole UDP datagram (not a fragment).
    Udp {
        source_port: u16,
        destination_port: u16,
        payload: Vec<u8>,
    },
    /// An ICMP "port unreachable" about the UDP datagram it quotes.
    PortUnreachable {
        /// The quoted datagram's source and destination.
        source: SocketAddrV4,
        destination: SocketAddrV4,
    },
    /// Anything else (TCP, other ICMP, a fragment …).
    Other,
}

impl Packet {
    /// Parses one captured Ethernet frame; `None` when it holds no IPv4.
    fn parse(line: String, frame: &[u8]) -> Option<Packet> {
        let sliced = SlicedPacket::from_ethernet(frame).ok()?;
        let Some(NetSlice::Ipv4(ipv4)) = &sliced.net else {
            return None;
        };
        let header = ipv4.header();
        // The IP packet within the frame: from its header (after the link
        // header) for its total length (a frame may carry padding after it).
        let start = header.slice().as_ptr() as usize - frame.as_ptr() as usize;
        let end = (start + usize::from(header.total_len())).min(frame.len());
        let contents = match &sliced.transport {
            Some(TransportSlice::Udp(udp)) if !ipv4.payload().fragmented => Contents::Udp {
                source_port: udp.source_port(),
                destination_port: udp.destination_port(),
                payload: udp.payload().to_vec(),
            },
            Some(TransportSlice::Icmpv4(icmp))
                if icmp.icmp_type()
                    == Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::Port) =>
            {
                quoted_udp(icmp.payload()).map_or(Contents::Other, |(source, destination)| {
                    Contents::PortUnreachable {
                        source,
                        destination,
                    }
                })
            }
            _ => Contents::Other,
        };
        Some(Packet {
            line,
            ip: frame[start..end].to_vec(),
            source: header.source_addr(),
            destination: header.destination_addr(),
            contents,
        })
    }

    /// The UDP payload, or nothing for any other packet.
    pub fn udp_payload(&self) -> &[u8] {
        match &self.contents {
            Contents::Udp { payload, .. } => payload,
            _ => &[],
        }
    }

    /// The UDP source endpoint, for a UDP datagram.
    pub fn udp_source(&self) -> Option<SocketAddrV4> {
        match &self.contents {
            Contents::Udp { source_port, .. } => Some(SocketAddrV4::new(self.source, *source_port)),
            _ => None,
        }
    }

    /// The UDP destination endpoint, for a UDP datagram.
    pub fn udp_destination(&self) -> Option<SocketAddrV4> {
        match &self.contents {
            Contents::Udp {
                destination_port, ..
            } => Some(SocketAddrV4::new(self.destination, *destination_port)),
            _ => None,
        }
    }
}

/// The endpoints of the UDP datagram an ICMP error quotes (its IPv4
/// header and at least its first 8 bytes, RFC 792).
fn quoted_udp(quoted: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4)> {
    let (ip, rest) = etherparse::Ipv4Header::from_slice(quoted).ok()?;
    let (udp, _) = etherparse::UdpHeader::from_slice(rest).ok()?;
    Some((
        SocketAddrV4::new(ip.source.into(), udp.source_port),
        SocketAddrV4::new(ip.destination.into(), udp.destination_port),
    ))
}

/// What a finished capture holds.
#[derive(Debug)]
pub struct Recording {
    /// Every packet line (normalized, see [`normalize`]) and note, in order.
    pub lines: Vec<String>,
    /// Every IPv4 packet, parsed from the pcap file, in order.
    pub packets: Vec<Packet>,
}

/// What the test added and consumed.
#[derive(Default)]
struct Marks {
    /// Notes, each with the number of packets printed before it.
    notes: Vec<(usize, String)>,
    /// How many packets `wait_for` has consumed.
    seen: usize,
}

/// A running tcpdump. Dropping it kills tcpdump and removes its file.
pub struct Capture {
    name: String,
    tcpdump: Running,
    file: PathBuf,
    marks: Mutex<Marks>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture").field("name", &self.name).finish()
    }
}

impl Capture {
    /// A new file for a capture to write (`tcpdump -w`); the capture
    /// started with it removes it.
    pub(crate) fn new_file() -> PathBuf {
        std::env::temp_dir().join(format!(
            "netlab-{}-{}.pcap",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Starts `command`, a tcpdump writing `file` (from [`Capture::new_file`])
    /// and printing each packet (`--print`), and waits until it says it is
    /// listening, so no packet sent afterwards is missed.
    pub(crate) fn start(command: Command, name: &str, file: PathBuf) -> Result<Capture> {
        let tcpdump = Running::try_start(name, command)
            .with_context(|| format!("cannot start {name}: is tcpdump installed?"))?;
        let capture = Capture {
            name: name.to_owned(),
            tcpdump,
            file,
            marks: Mutex::default(),
        };
        capture.wait_until("to start", |_, stderr, _| stderr.contains("listening on"))?;
        Ok(capture)
    }

    fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a packet line containing `needle` (after normalizing),
    /// past the lines earlier waits consumed; returns it.
    pub fn wait_for(&self, needle: &str) -> Result<String> {
        let start = self.marks().seen;
        let mut found = None;
        self.wait_until(
            &format!("to show a packet with {needle:?}"),
            |packets, _, _| {
                let normalized = normalize_lines(&packets);
                if let Some(at) = normalized
                    .get(start..)
                    .unwrap_or_default()
                    .iter()
                    .position(|line| line.contains(needle))
                {
                    found = Some((start + at + 1, normalized[start + at].clone()));
                    return true;
                }
                false
            },
        )?;
        let (seen, line) = found.unwrap_or_default();
        self.marks().seen = seen;
        Ok(line)
    }

    /// Waits until `count` packet lines have been printed in all.
    pub fn wait_for_count(&self, count: usize) -> Result<()> {
        self.wait_until(&format!("to show {count} packets"), |packets, _, _| {
            packets.len() >= count
        })
    }

    /// Adds a note (`# text`) after the packets printed so far: what the
    /// test did, or what `ss` showed, at that point of the capture.
    pub fn note(&self, text: &str) {
        let printed = packet_lines(&self.tcpdump.stdout()).len();
        self.marks().notes.push((printed, format!("# {text}")));
    }

    /// The packet lines (normalized, see [`normalize`]) and notes so far.
    pub fn lines(&self) -> Vec<String> {
        let packets = packet_lines(&self.tcpdump.stdout());
        let marks = self.marks();
        let mut entries = Vec::with_capacity(packets.len() + marks.notes.len());
        let mut notes = marks.notes.iter().peekable();
        for (index, packet) in packets.into_iter().enumerate() {
            while let Some((_, note)) = notes.next_if(|(at, _)| *at <= index) {
                entries.push(note.clone());
            }
            entries.push(packet);
        }
        entries.extend(notes.map(|(_, note)| note.clone()));
        normalize_lines(&entries)
    }

    /// Stops tcpdump and returns every packet line (normalized) and note.
    pub fn finish(self) -> Result<Vec<String>> {
        Ok(self.stop()?.lines)
    }

    /// Stops tcpdump and returns its lines and notes with the packets
    /// parsed from its file.
    pub fn stop(mut self) -> Result<Recording> {
        // `ip netns exec` replaced itself with tcpdump: same pid. SIGINT
        // makes tcpdump flush its file and output and exit.
        self.tcpdump.signal(Signal::SIGINT);
        let name = self.name.clone();
        self.tcpdump
            .try_wait_exit(CAPTURE_DEADLINE)
            .map_err(|err| anyhow!("{name} did not stop: {err}"))?;
        // A capture that missed packets would show the book a wire that
        // never was.
        let stderr = self.tcpdump.stderr();
        let dropped = stderr
            .lines()
            .find_map(|line| line.strip_suffix(" packets dropped by kernel"))
            .and_then(|count| count.trim().parse::<u64>().ok());
        if dropped != Some(0) {
            bail!("{name} lost packets: {}", stderr.trim());
        }
        let lines = self.lines();
        let printed = packet_lines(&self.tcpdump.stdout());
        let packets = self.read_file(printed)?;
        Ok(Recording { lines, packets })
    }

    /// The packets of the pcap file, each with its printed line.
    fn read_file(&self, printed: Vec<String>) -> Result<Vec<Packet>> {
        let file = std::fs::File::open(&self.file)
            .with_context(|| format!("cannot open {}", self.file.display()))?;
        let mut reader = PcapReader::new(file)
            .with_context(|| format!("{} is no pcap file", self.file.display()))?;
        let mut frames = Vec::new();
        while let Some(packet) = reader.next_packet() {
            let packet = packet.with_context(|| format!("in {}", self.file.display()))?;
            frames.push(packet.data.into_owned());
        }
        if frames.len() != printed.len() {
            bail!(
                "{}: {} packets in the file, {} printed",
                self.name,
                frames.len(),
                printed.len()
            );
        }
        Ok(printed
            .into_iter()
            .zip(frames)
            .filter_map(|(line, frame)| Packet::parse(line, &frame))
            .collect())
    }

    /// Waits until `done(packet lines, stderr, stopped)` holds.
    fn wait_until(
        &self,
        what: &str,
        mut done: impl FnMut(Vec<String>, &str, bool) -> bool,
    ) -> Result<()> {
        self.tcpdump
            .wait_until(CAPTURE_DEADLINE, |output| {
                let stdout = String::from_utf8_lossy(output.stdout);
                let stderr = String::from_utf8_lossy(output.stderr);
                done(packet_lines(&stdout), &stderr, output.closed)
            })
            .map_err(|printed| {
                anyhow!(
                    "{} did not wait {what} within {CAPTURE_DEADLINE:?}\n{printed}",
                    self.name
                )
            })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.tcpdump.kill();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// tcpdump's output, one entry per packet: with -v a packet takes several
/// lines, the others starting with blanks.
fn packet_lines(stdout: &str) -> Vec<String> {
    let mut packets: Vec<String> = Vec::new();
    for line in stdout.lines() {
        match packets.last_mut() {
            Some(last) if line.starts_with([' ', '\t']) => {
                last.push(' ');
                last.push_str(line.trim());
            }
            _ => packets.push(line.to_owned()),
        }
    }
    // A line still being written is not a packet yet.
    if !stdout.ends_with('\n') {
        packets.pop();
    }
    packets
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
    use etherparse::PacketBuilder;

    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    #[test]
    fn a_frame_parses_into_its_udp_datagram_or_the_icmp_error_about_one() {
        let (a, b) = ([203, 0, 113, 2], [203, 0, 113, 1]);
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(a, b, 64)
            .udp(55501, 55502)
            .write_to_vec(&mut frame, b"PUNCH")
            .unwrap();
        let ip = frame[14..].to_vec();
        // A frame padded to Ethernet's 60-byte minimum: the padding is not
        // part of the IP packet.
        frame.resize(60, 0);
        let udp = Packet::parse("udp".into(), &frame).unwrap();
        assert_eq!(udp.ip, ip);
        assert_eq!(udp.udp_source(), Some(SocketAddrV4::new(a.into(), 55501)));
        assert_eq!(
            udp.udp_destination(),
            Some(SocketAddrV4::new(b.into(), 55502))
        );
        assert_eq!(udp.udp_payload(), b"PUNCH");

        // The answer of b: port unreachable, quoting the datagram.
        let mut error = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(b, a, 64)
            .icmpv4(Icmpv4Type::DestinationUnreachable(
                icmpv4::DestUnreachableHeader::Port,
            ))
            .write_to_vec(&mut error, &ip)
            .unwrap();
        let icmp = Packet::parse("icmp".into(), &error).unwrap();
        assert_eq!(
            icmp.contents,
            Contents::PortUnreachable {
                source: SocketAddrV4::new(a.into(), 55501),
                destination: SocketAddrV4::new(b.into(), 55502),
            }
        );
        assert_eq!(icmp.udp_payload(), b"");
    }

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
