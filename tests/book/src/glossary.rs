//! The first use of a glossary term in a chapter links to its entry.
//!
//! A term counts where a reader meets it: in prose, in a table, or as a code
//! span that is exactly the term (`SO_REUSEADDR`). It does not count in
//! headings, code blocks, HTML lines (`<summary>` …), includes, or inside
//! another link's text. [`first_uses`] finds each term's first use on a
//! page; [`link_first_uses`] turns the unlinked ones into links.

use regex::Regex;

/// (pattern, glossary anchor). Patterns are regexes matched on word
/// boundaries; `(?i)` where the term is an ordinary word.
pub const TERMS: &[(&str, &str)] = &[
    (r"(?i)accept queues?", "accept-queue"),
    (r"ACK", "ack"),
    (r"(?i)async-signal-safe", "async-signal-safe"),
    (r"(?i)backpressure", "backpressure"),
    (r"(?i)closed loop", "closed-loop"),
    (r"conntrack", "conntrack"),
    (r"(?i)coordinated omission", "coordinated-omission"),
    (r"(?i)datagrams?", "datagram"),
    (r"EAGAIN", "eagain"),
    (r"EINTR", "eintr"),
    (r"(?i)ephemeral ports?", "ephemeral-port"),
    (r"EPIPE|SIGPIPE", "epipe"),
    (r"epoll", "epoll"),
    (r"(?i)event loops?", "event-loop"),
    (r"(?i)file descriptors?", "file-descriptor"),
    (r"FIN", "fin"),
    (r"FIN-WAIT-2|CLOSE-WAIT", "fin-wait-2"),
    (r"(?i)fragments?", "fragment"),
    (r"(?i)half-close", "half-close"),
    (r"(?i)hole punching", "hole-punching"),
    (r"ICMP", "icmp"),
    (r"(?i)Jain's fairness index", "jains-fairness-index"),
    (r"(?i)kernel", "kernel"),
    (
        r"(?i)level-triggered|edge-triggered",
        "level-and-edge-triggered",
    ),
    (r"(?i)Little's law", "littles-law"),
    (r"(?i)loopback", "loopback"),
    (r"MTU", "mtu"),
    (r"NATs?", "nat"),
    (
        r"(?i)(?:endpoint-independent|address-dependent|address[ -]and[ -]port[ -]dependent) (?:mapping|filtering)",
        "nat-mapping-and-filtering",
    ),
    (r"(?i)network namespaces?", "network-namespace"),
    (r"(?i)non-blocking", "non-blocking-socket"),
    (r"(?i)open loop", "open-loop"),
    (r"(?i)peer[ -]to[ -]peer", "peer-to-peer"),
    (r"poll", "poll"),
    (r"(?i)ports?", "port"),
    (r"(?i)readiness", "readiness"),
    (r"(?i)receive buffers?", "receive-buffer"),
    (r"RST", "rst"),
    (r"SA_RESTART", "sa-restart"),
    (r"(?i)signals?", "signal"),
    (r"signalfd", "signalfd"),
    (r"(?i)sockets?", "socket"),
    (r"SO_RCVTIMEO", "so-rcvtimeo"),
    (r"SO_REUSEADDR", "so-reuseaddr"),
    (r"SO_REUSEPORT", "so-reuseport"),
    (r"(?i)stream", "stream"),
    (r"STUN|TURN", "stun"),
    (r"(?i)symmetric NATs?", "symmetric-nat"),
    (r"SYN", "syn"),
    (r"TCP", "tcp"),
    (r"(?i)thread[ -]per[ -]client", "thread-per-client"),
    (r"TIME[-_]WAIT", "time-wait"),
    (r"UDP", "udp"),
    (r"(?i)veth pairs?", "veth-pair"),
];

/// One use of a term on a page.
#[derive(Debug, Clone, PartialEq)]
pub struct Use {
    /// 0-based line and byte range within it.
    pub line: usize,
    pub range: std::ops::Range<usize>,
    /// Already a link to the term's entry.
    pub linked: bool,
}

/// A piece of a line: plain text, a code span, or a link's text.
enum Piece {
    Text,
    Code,
    Link { to_glossary: Option<String> },
}

/// The pieces of one Markdown line, with their byte ranges (for a link,
/// the range of its text, and the range of the whole link).
fn pieces(line: &str) -> Vec<(Piece, std::ops::Range<usize>)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let (mut at, mut text_start) = (0, 0);
    while at < bytes.len() {
        let close_text = |out: &mut Vec<_>, start: usize, end: usize| {
            if end > start {
                out.push((Piece::Text, start..end));
            }
        };
        if bytes[at] == b'`' {
            if let Some(len) = line[at + 1..].find('`') {
                close_text(&mut out, text_start, at);
                out.push((Piece::Code, at + 1..at + 1 + len));
                at += len + 2;
                text_start = at;
                continue;
            }
        } else if bytes[at] == b'['
            && let Some(link) = link_at(line, at)
        {
            close_text(&mut out, text_start, at);
            let image = at > 0 && bytes[at - 1] == b'!';
            let to_glossary = (!image)
                .then(|| link.target.strip_prefix("glossary.md#").map(str::to_owned))
                .flatten();
            out.push((Piece::Link { to_glossary }, link.text));
            at = link.end;
            text_start = at;
            continue;
        }
        at += 1;
    }
    if text_start < bytes.len() {
        out.push((Piece::Text, text_start..bytes.len()));
    }
    out
}

struct Link<'a> {
    text: std::ops::Range<usize>,
    target: &'a str,
    end: usize,
}

/// The `[text](target)` link starting at `at`, if one does.
fn link_at(line: &str, at: usize) -> Option<Link<'_>> {
    let mut depth = 0;
    for (offset, c) in line[at..].char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    let close = at + offset;
                    let rest = line[close + 1..].strip_prefix('(')?;
                    let target_len = rest.find(')')?;
                    return Some(Link {
                        text: at + 1..close,
                        target: &rest[..target_len],
                        end: close + 2 + target_len + 1,
                    });
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether a line is prose a reader meets as text (not a heading, HTML, an
/// include or an image).
fn is_prose(line: &str) -> bool {
    let trimmed = line.trim_start();
    !(trimmed.starts_with('#')
        || trimmed.starts_with('<')
        || trimmed.starts_with("{{#")
        || trimmed.starts_with("!["))
}

fn matcher(pattern: &str) -> Regex {
    // Word boundaries that also refuse a hyphen or underscore next to the
    // term: FIN is not the FIN of FIN-WAIT-2, nor epoll of epoll_wait.
    Regex::new(&format!(r"(?:^|[^\w-])((?:{pattern}))(?:$|[^\w-])")).expect("a term's pattern")
}

/// The first use of each term on `page`: (anchor, use).
pub fn first_uses(page: &str) -> Vec<(&'static str, Use)> {
    let mut found: Vec<(&'static str, Use)> = Vec::new();
    for &(pattern, anchor) in TERMS {
        let term = matcher(pattern);
        let exact = Regex::new(&format!("^(?:{pattern})$")).expect("a term's pattern");
        if let Some(first) = uses(page, &term, &exact, anchor).next() {
            found.push((anchor, first));
        }
    }
    found
}

fn uses<'a>(
    page: &'a str,
    term: &'a Regex,
    exact: &'a Regex,
    anchor: &'a str,
) -> impl Iterator<Item = Use> + 'a {
    let (mut fenced, mut title) = (false, false);
    page.lines().enumerate().flat_map(move |(index, line)| {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            return Vec::new();
        }
        // A folded aside's title: a link there would open a page instead
        // of the aside.
        match line.trim() {
            "<summary>" => title = true,
            "</summary>" => title = false,
            _ => {}
        }
        if fenced || title || !is_prose(line) {
            return Vec::new();
        }
        let mut here = Vec::new();
        for (piece, range) in pieces(line) {
            let text = &line[range.clone()];
            match piece {
                Piece::Code if exact.is_match(text) => here.push(Use {
                    line: index,
                    range: range.start - 1..range.end + 1,
                    linked: false,
                }),
                Piece::Link {
                    to_glossary: Some(target),
                } if target == anchor => here.push(Use {
                    line: index,
                    range,
                    linked: true,
                }),
                Piece::Text => {
                    here.extend(term.captures_iter(text).map(|found| {
                        let word = found.get(1).expect("the term's group");
                        Use {
                            line: index,
                            range: range.start + word.start()..range.start + word.end(),
                            linked: false,
                        }
                    }));
                }
                _ => {}
            }
        }
        here
    })
}

/// `page` with the first use of every term made a link to its entry, where
/// it is not one already.
pub fn link_first_uses(page: &str) -> String {
    let mut lines: Vec<String> = page.lines().map(str::to_owned).collect();
    // One term at a time, from the right of each line, so ranges stay valid.
    let mut edits: Vec<(&'static str, Use)> = first_uses(page)
        .into_iter()
        .filter(|(_, first)| !first.linked)
        .collect();
    edits.sort_by_key(|(_, first)| (first.line, std::cmp::Reverse(first.range.start)));
    let mut taken: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    for (anchor, first) in edits {
        // Two terms in one place (FIN-WAIT-2 inside TIME-WAIT's sentence):
        // link the first, leave the other for the test to point at.
        if taken.iter().any(|(line, range)| {
            *line == first.line && range.start < first.range.end && first.range.start < range.end
        }) {
            continue;
        }
        let line = &mut lines[first.line];
        let word = line[first.range.clone()].to_owned();
        line.replace_range(
            first.range.clone(),
            &format!("[{word}](glossary.md#{anchor})"),
        );
        taken.push((first.line, first.range));
    }
    let mut text = lines.join("\n");
    if page.ends_with('\n') {
        text.push('\n');
    }
    text
}
