//! Applies a broken implementation, a unified diff against a reference
//! lesson (`practice/broken/<crate>/<K>-<slug>.patch`), to a copy of the
//! lesson. Written here rather than calling `patch` or `git apply`, so the
//! checker's tests need nothing but cargo, and a hunk that no longer fits
//! the lesson is an error that names it.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One `@@ -old,n +new,m @@` hunk: its lines with their ' ', '-', '+' marks.
#[derive(Debug)]
struct Hunk {
    old_start: usize,
    lines: Vec<(char, String)>,
}

/// One file's changes: its path relative to the crate, and its hunks.
#[derive(Debug)]
struct FilePatch {
    path: String,
    hunks: Vec<Hunk>,
}

fn parse(text: &str) -> Result<Vec<FilePatch>> {
    let mut files: Vec<FilePatch> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(path) = line.strip_prefix("+++ ") {
            let path = path.split('\t').next().unwrap_or(path).trim();
            let path = path.strip_prefix("b/").unwrap_or(path);
            files.push(FilePatch {
                path: path.to_owned(),
                hunks: Vec::new(),
            });
        } else if let Some(header) = line.strip_prefix("@@ -") {
            let file = files
                .last_mut()
                .context("a hunk before any `+++ file` line")?;
            let old = header.split(' ').next().unwrap_or_default();
            let old_start: usize = old
                .split(',')
                .next()
                .and_then(|start| start.parse().ok())
                .with_context(|| format!("a hunk header without a start line: {line:?}"))?;
            let mut hunk = Hunk {
                old_start,
                lines: Vec::new(),
            };
            while let Some(next) = lines.peek() {
                let mark = next.chars().next().unwrap_or(' ');
                if next.starts_with("@@") || next.starts_with("--- ") || next.starts_with("diff ") {
                    break;
                }
                let next = lines.next().unwrap_or_default();
                match mark {
                    ' ' | '-' | '+' => hunk.lines.push((mark, next.get(1..).unwrap_or("").into())),
                    // "\ No newline at end of file", or an empty context line.
                    '\\' => {}
                    _ if next.is_empty() => hunk.lines.push((' ', String::new())),
                    _ => bail!("not a line of a hunk: {next:?}"),
                }
            }
            file.hunks.push(hunk);
        }
    }
    if files.is_empty() {
        bail!("no `+++ file` line: not a unified diff");
    }
    Ok(files)
}

/// Applies the unified diff `patch` to the files under `dir`.
pub fn apply(patch: &str, dir: &Path) -> Result<()> {
    for file in parse(patch)? {
        let path = dir.join(&file.path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("the patch changes {}, which is not there", file.path))?;
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        // Later hunks first, so earlier line numbers stay right.
        for hunk in file.hunks.iter().rev() {
            let old: Vec<&str> = hunk
                .lines
                .iter()
                .filter(|(mark, _)| *mark != '+')
                .map(|(_, line)| line.as_str())
                .collect();
            let new: Vec<String> = hunk
                .lines
                .iter()
                .filter(|(mark, _)| *mark != '-')
                .map(|(_, line)| line.clone())
                .collect();
            let wanted = hunk.old_start.saturating_sub(1);
            let fits = |at: usize| {
                at + old.len() <= lines.len()
                    && lines[at..at + old.len()]
                        .iter()
                        .zip(&old)
                        .all(|(a, b)| a == b)
            };
            // Where the header says, else the nearest place the context fits.
            let at = (0..=lines.len())
                .filter(|&at| fits(at))
                .min_by_key(|&at| at.abs_diff(wanted))
                .with_context(|| {
                    format!(
                        "the hunk at line {} of {} does not fit the lesson any more",
                        hunk.old_start, file.path
                    )
                })?;
            lines.splice(at..at + old.len(), new);
        }
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hunk_is_applied_where_its_context_fits() {
        let dir = std::env::temp_dir().join(format!("practice-patch-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/a.rs"), "one\ntwo\nthree\nfour\n").unwrap();
        // The header says line 1, but the context is at line 2.
        let patch = "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,2 +1,2 @@\n two\n-three\n+THREE\n";
        apply(patch, &dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("src/a.rs")).unwrap(),
            "one\ntwo\nTHREE\nfour\n"
        );
        let stale = "--- a/src/a.rs\n+++ b/src/a.rs\n@@ -1,1 +1,1 @@\n-five\n+5\n";
        let err = apply(stale, &dir).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
