//! Files under `docs/src/generated/` that the book shows and the tests keep
//! honest: program output captured from real runs, and diffs between lessons.
//!
//! A check compares what a test produced now with the committed file and
//! fails when they differ, so the book cannot drift from the code. Run the
//! tests with `UPDATE_GENERATED=1` (what `just generated` does) to rewrite the
//! files instead, then review and commit them.

use workspace_bin::workspace_root;

/// Fails unless `docs/src/generated/<name>` holds exactly `content`; with
/// `UPDATE_GENERATED=1` in the environment, writes it instead.
pub fn check_generated(name: &str, content: &str) {
    let path = workspace_root().join("docs/src/generated").join(name);
    if std::env::var_os("UPDATE_GENERATED").is_some_and(|value| value == "1") {
        if std::fs::read_to_string(&path).ok().as_deref() != Some(content) {
            std::fs::create_dir_all(path.parent().expect("generated files live in a folder"))
                .and_then(|()| std::fs::write(&path, content))
                .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        }
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != content {
        let diff = similar::TextDiff::from_lines(&committed, content)
            .unified_diff()
            .header(
                &format!("{name} (committed)"),
                &format!("{name} (this run)"),
            )
            .to_string();
        panic!(
            "docs/src/generated/{name} is stale; regenerate it with `just generated` and commit it\n{diff}"
        );
    }
}

/// `text` with each `(from, to)` replaced, longest `from` first so that
/// `127.0.0.1:4000` is replaced before `:400` could match inside it.
///
/// Captured transcripts hold the random ports a test used; this puts the
/// lessons' default ports (or names) in their place so the stored file is
/// the same on every run.
pub fn normalize(text: &str, replacements: &[(String, String)]) -> String {
    let mut ordered: Vec<&(String, String)> = replacements.iter().collect();
    ordered.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    let mut text = text.to_owned();
    for (from, to) in ordered {
        text = text.replace(from.as_str(), to);
    }
    text
}
