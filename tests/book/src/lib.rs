//! Checks that keep the book (docs/) and the code from drifting apart.
//!
//! The book never pastes code: it includes it from the lessons with
//! `{{#include path:anchor}}`, shows diffs generated from the lessons, and
//! shows terminal sessions captured by the lessons' tests. The tests of this
//! crate check the includes and links without needing mdbook, and keep the
//! generated diffs fresh. This file holds what they share: the book's pages
//! and the lesson diffs.

/// The first use of a glossary term in a chapter links to its entry.
pub mod glossary;
/// Reading the Chinese catalogue (po/zh-CN.po).
pub mod po;

use std::path::{Path, PathBuf};

/// `text` with each folded aside's title back on one line
/// (`<summary>Answer</summary>`). The book writes a title as a paragraph of
/// its own between `<summary>` and `</summary>`, so that mdbook-xgettext
/// extracts it for translation; checks read it whole.
pub fn fold_summaries(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut at = 0;
    while at < lines.len() {
        let line = lines[at];
        if line.trim() == "<summary>"
            && let Some(close) = lines[at + 1..]
                .iter()
                .position(|next| next.trim() == "</summary>")
        {
            let title: Vec<&str> = lines[at + 1..at + 1 + close]
                .iter()
                .map(|part| part.trim())
                .filter(|part| !part.is_empty())
                .collect();
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push(format!("{indent}<summary>{}</summary>", title.join(" ")));
            at += close + 2;
            continue;
        }
        out.push(line.to_owned());
        at += 1;
    }
    let mut folded = out.join("\n");
    if text.ends_with('\n') {
        folded.push('\n');
    }
    folded
}

/// Every Markdown page under docs/src, with its path.
pub fn pages() -> Vec<(PathBuf, String)> {
    files_under(&testkit::workspace_root().join("docs/src"), "md")
}

/// The `code spans` of a Markdown text, outside fenced code blocks.
pub fn code_spans(text: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            spans.extend(line.split('`').skip(1).step_by(2).map(str::to_owned));
        }
    }
    spans
}

/// Every file under `folder` (recursively, skipping `target` folders) whose
/// name ends in `.{ext}`, with its text, sorted by path.
pub fn files_under(folder: &Path, ext: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    let mut folders = vec![folder.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .unwrap_or_else(|err| panic!("cannot list {}: {err}", folder.display()));
        for entry in entries {
            let path = entry.expect("a folder entry").path();
            if path.is_dir() {
                if !path.ends_with("target") {
                    folders.push(path);
                }
            } else if path.extension().is_some_and(|found| found == ext) {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
                files.push((path, text));
            }
        }
    }
    files.sort();
    files
}

/// The `{{#include …}}` directives of `text`: (path, optional anchor).
pub fn includes(text: &str) -> Vec<(String, Option<String>)> {
    text.match_indices("{{#include ")
        .filter_map(|(at, directive)| {
            let rest = &text[at + directive.len()..];
            let target = rest[..rest.find("}}")?].trim();
            Some(match target.rsplit_once(':') {
                // `file.rs:anchor`; a line range (`:3:7`, `:12`) is not an anchor.
                Some((path, anchor))
                    if !anchor.chars().next().is_some_and(|c| c.is_ascii_digit()) =>
                {
                    (path.to_owned(), Some(anchor.to_owned()))
                }
                _ => (target.to_owned(), None),
            })
        })
        .collect()
}

/// The diffs the book shows, one stage to the next: (generated file name,
/// old source, new source), paths from the workspace root.
pub const DIFFS: &[(&str, &str, &str)] = &[
    (
        "lesson1-to-lesson2.diff",
        "lessons/lesson1-udp-alternating/src/bin/lesson1-chat.rs",
        "lessons/lesson2-udp-threaded/src/bin/lesson2-chat.rs",
    ),
    (
        "lesson3-to-lesson4-server.diff",
        "lessons/lesson3-tcp-thread-per-client/src/bin/lesson3-server.rs",
        "lessons/lesson4-tcp-reuseaddr/src/bin/lesson4-server.rs",
    ),
    (
        "lesson6-to-lesson7-protocol.diff",
        "lessons/lesson6-udp-hole-punching/src/protocol.rs",
        "lessons/lesson7-nat-traversal/src/protocol.rs",
    ),
    (
        "lesson6-to-lesson7-rendezvous.diff",
        "lessons/lesson6-udp-hole-punching/src/bin/lesson6-rendezvous.rs",
        "lessons/lesson7-nat-traversal/src/bin/lesson7-rendezvous.rs",
    ),
    (
        "lesson6-to-lesson7-peer.diff",
        "lessons/lesson6-udp-hole-punching/src/bin/lesson6-peer.rs",
        "lessons/lesson7-nat-traversal/src/bin/lesson7-peer.rs",
    ),
];

/// The unified diff from `old` to `new` (workspace-relative paths), with
/// the `ANCHOR:` marker lines left out of both: mdbook strips them from
/// every include, so a reader never sees them, and a diff that showed them
/// would be noise about the book, not about the code.
pub fn lesson_diff(old: &str, new: &str) -> String {
    let read = |path: &str| {
        let full = testkit::workspace_root().join(path);
        let text = std::fs::read_to_string(&full)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", full.display()));
        text.lines()
            .filter(|line| !is_anchor_marker(line))
            .map(|line| format!("{line}\n"))
            .collect::<String>()
    };
    let (old_text, new_text) = (read(old), read(new));
    similar::TextDiff::from_lines(&old_text, &new_text)
        .unified_diff()
        .context_radius(3)
        .header(old, new)
        .to_string()
}

/// Whether `line` is an mdbook `// ANCHOR: x` or `// ANCHOR_END: x` marker.
pub fn is_anchor_marker(line: &str) -> bool {
    let line = line.trim_start();
    line.starts_with("// ANCHOR:") || line.starts_with("// ANCHOR_END:")
}

/// Whether `file` has both markers of `anchor`.
pub fn has_anchor(file: &Path, anchor: &str) -> bool {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let has = |marker: &str| {
        text.lines().any(|line| {
            line.trim_start()
                .strip_prefix("// ")
                .and_then(|rest| rest.strip_prefix(marker))
                .is_some_and(|name| name.trim() == anchor)
        })
    };
    has("ANCHOR:") && has("ANCHOR_END:")
}

/// How a source file spends its lines on comments (COMMON convention 5):
/// the runs of consecutive comment lines (`//`, `///`, `//!`) and the share
/// of comment lines among non-blank ones. Anchor markers are not comments
/// and do not break a run; a blank or code line does.
#[derive(Debug, PartialEq)]
pub struct CommentBudget {
    /// Each run of consecutive comment lines: (first line, last line), 1-based.
    pub runs: Vec<(usize, usize)>,
    /// Comment lines.
    pub comments: usize,
    /// Non-blank lines that are not anchor markers.
    pub non_blank: usize,
}

impl CommentBudget {
    /// Measures `text`.
    pub fn of(text: &str) -> CommentBudget {
        let mut budget = CommentBudget {
            runs: Vec::new(),
            comments: 0,
            non_blank: 0,
        };
        let mut run: Option<(usize, usize)> = None;
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            let trimmed = line.trim();
            if is_anchor_marker(trimmed) {
                continue;
            }
            if trimmed.starts_with("//") {
                budget.comments += 1;
                budget.non_blank += 1;
                run = Some(run.map_or((line_number, line_number), |(first, _)| {
                    (first, line_number)
                }));
                continue;
            }
            if !trimmed.is_empty() {
                budget.non_blank += 1;
            }
            budget.runs.extend(run.take());
        }
        budget.runs.extend(run);
        budget
    }

    /// Comment lines as a share of non-blank lines (0 for an empty file).
    pub fn share(&self) -> f64 {
        if self.non_blank == 0 {
            0.0
        } else {
            self.comments as f64 / self.non_blank as f64
        }
    }
}
