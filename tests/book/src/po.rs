//! Just enough of gettext's PO format to check the Chinese catalogue:
//! each entry's flags, msgid and msgstr (singular messages only, which is
//! all mdbook-xgettext writes).

use std::path::Path;

/// One message of a catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub msgid: String,
    pub msgstr: String,
    pub fuzzy: bool,
}

/// The entries of the PO file at `path`, without the header (empty msgid)
/// and without obsolete (`#~`) entries.
pub fn read(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    parse(&text)
}

/// The entries of a PO text (see [`read`]).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for block in text.split("\n\n") {
        let (mut msgid, mut msgstr, mut fuzzy) = (String::new(), String::new(), false);
        let mut field: Option<&mut String> = None;
        for line in block.lines() {
            if let Some(flags) = line.strip_prefix("#,") {
                fuzzy |= flags.split(',').any(|flag| flag.trim() == "fuzzy");
            } else if let Some(rest) = line.strip_prefix("msgid ") {
                msgid = unquote(rest);
                field = Some(&mut msgid);
            } else if let Some(rest) = line.strip_prefix("msgstr ") {
                msgstr = unquote(rest);
                field = Some(&mut msgstr);
            } else if line.starts_with('"') {
                if let Some(field) = field.as_deref_mut() {
                    field.push_str(&unquote(line));
                }
            } else if !line.starts_with('#') {
                field = None;
            }
        }
        if !msgid.is_empty() {
            entries.push(Entry {
                msgid,
                msgstr,
                fuzzy,
            });
        }
    }
    entries
}

/// The text of one quoted PO string, unescaped.
fn unquote(quoted: &str) -> String {
    let inner = quoted.trim().trim_start_matches('"').trim_end_matches('"');
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Whether a message is code and nothing else (a code block, a comment or
/// a string literal from a listing, a table cell of code spans or numbers):
/// its translation is the message itself, so that the Chinese book shows
/// code and program output exactly as they are.
pub fn is_code(msgid: &str) -> bool {
    let outside_code_spans = msgid.split('`').step_by(2).collect::<String>();
    msgid.starts_with("```")
        || msgid.trim_start().starts_with("//")
        || ["\"", "'", "b\"", "b'"]
            .iter()
            .any(|quote| msgid.starts_with(quote))
        || !outside_code_spans.chars().any(|c| c.is_ascii_alphabetic())
}

/// `text` (a PO file) with every code message given itself as its
/// translation (also where msgmerge guessed a fuzzy one), keeping the
/// file's own line wrapping.
pub fn copy_code_messages(text: &str) -> String {
    let blocks: Vec<String> = text
        .split("\n\n")
        .map(|block| {
            let entry = parse(block);
            let lines: Vec<&str> = block.lines().collect();
            let id_at = lines.iter().position(|line| line.starts_with("msgid "));
            let str_at = lines.iter().position(|line| line.starts_with("msgstr "));
            let (Some(id_at), Some(str_at), [entry]) = (id_at, str_at, entry.as_slice()) else {
                return block.to_owned();
            };
            if !is_code(&entry.msgid) || (entry.msgstr == entry.msgid && !entry.fuzzy) {
                return block.to_owned();
            }
            let mut out: Vec<String> = Vec::new();
            for line in &lines[..id_at] {
                if line.starts_with("#|") {
                    continue;
                }
                if let Some(flags) = line.strip_prefix("#,") {
                    let kept: Vec<&str> = flags
                        .split(',')
                        .map(str::trim)
                        .filter(|flag| *flag != "fuzzy" && !flag.is_empty())
                        .collect();
                    if !kept.is_empty() {
                        out.push(format!("#, {}", kept.join(", ")));
                    }
                    continue;
                }
                out.push(line.to_string());
            }
            out.extend(lines[id_at..str_at].iter().map(|line| line.to_string()));
            out.push(lines[id_at].replacen("msgid ", "msgstr ", 1));
            out.extend(lines[id_at + 1..str_at].iter().map(|line| line.to_string()));
            out.join("\n")
        })
        .collect();
    blocks.join("\n\n")
}
