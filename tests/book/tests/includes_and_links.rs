//! Every include in the book resolves to a file and an anchor that exist,
//! and every relative link or image points to a file that exists: what
//! `mdbook build` would only warn about (or silently render empty) fails
//! here, without mdbook installed.

use std::collections::HashMap;
use std::path::PathBuf;

use book::{has_anchor, includes, pages};

/// The Markdown files that another page includes whole (a lesson's
/// Practice section, `practice/lessonN.md`), each with the page including
/// it: mdbook renders them inside that page, so their links are relative
/// to it, and they need no entry in SUMMARY.md.
fn included_pages() -> HashMap<PathBuf, PathBuf> {
    let mut included = HashMap::new();
    for (page, text) in pages() {
        let folder = page.parent().expect("a page lives in a folder");
        for (path, anchor) in includes(&text) {
            if anchor.is_none() && path.ends_with(".md") {
                included.insert(folder.join(&path), page.clone());
            }
        }
    }
    included
}

#[test]
fn every_include_resolves_to_a_file_and_anchor() {
    let mut problems = Vec::new();
    let mut count = 0;
    for (page, text) in pages() {
        let folder = page.parent().expect("a page lives in a folder");
        for (path, anchor) in includes(&text) {
            count += 1;
            let file = folder.join(&path);
            if !file.is_file() {
                problems.push(format!(
                    "{}: {{{{#include {path}}}}}: no such file",
                    page.display()
                ));
            } else if let Some(anchor) = anchor.filter(|anchor| !has_anchor(&file, anchor)) {
                problems.push(format!(
                    "{}: {path}: no ANCHOR/ANCHOR_END pair named {anchor:?}",
                    page.display()
                ));
            }
        }
    }
    assert!(count > 0, "the book includes nothing: is docs/src there?");
    assert!(
        problems.is_empty(),
        "unresolved includes:\n{}",
        problems.join("\n")
    );
}

/// The ids a link may target on a Markdown page (outside code blocks): the
/// explicit ids of its headings (`## The catch {#the-catch}`) and its
/// `<a id="…">` anchors (the glossary's entries). A heading's own id comes
/// from its text, which the Chinese edition translates: a link to it would
/// break there, so links only target explicit ids.
fn heading_ids(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut ids = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            let heading = line.trim_start_matches('#').trim();
            if let Some(explicit) = heading
                .strip_suffix('}')
                .and_then(|rest| rest.rsplit_once("{#"))
                .map(|(_, id)| id)
            {
                ids.push(explicit.to_owned());
            }
        } else if !fenced {
            for (at, _) in line.match_indices("<a id=\"") {
                let rest = &line[at + "<a id=\"".len()..];
                if let Some(end) = rest.find('"') {
                    ids.push(rest[..end].to_owned());
                }
            }
        }
    }
    ids
}

#[test]
fn every_relative_link_and_image_exists() {
    let mut problems = Vec::new();
    let mut fragments = 0;
    let included = included_pages();
    for (page, text) in pages() {
        // An included page's links are read where it is rendered.
        let rendered_in = included.get(&page).unwrap_or(&page);
        let folder = rendered_in.parent().expect("a page lives in a folder");
        // `](target)` covers both links and images.
        for (at, _) in text.match_indices("](") {
            let rest = &text[at + 2..];
            let Some(end) = rest.find(')') else { continue };
            let (target, fragment) = match rest[..end].split_once('#') {
                Some((target, fragment)) => (target, Some(fragment)),
                None => (&rest[..end], None),
            };
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let file = if target.is_empty() {
                rendered_in.clone()
            } else {
                folder.join(target)
            };
            if !file.exists() {
                problems.push(format!("{}: ({target}) does not exist", page.display()));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if file.extension().is_some_and(|ext| ext == "md") {
                fragments += 1;
                let linked = std::fs::read_to_string(&file).unwrap_or_default();
                if !heading_ids(&linked).iter().any(|id| id == fragment) {
                    problems.push(format!(
                        "{}: ({target}#{fragment}): no heading with that explicit id \
                         (`## Heading {{#{fragment}}}`) or anchor in {}",
                        page.display(),
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(
        fragments > 0,
        "no #fragment link checked: is the parser right?"
    );
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn summary_lists_every_page() {
    let pages = pages();
    let summary = pages
        .iter()
        .find(|(path, _)| path.ends_with("SUMMARY.md"))
        .map(|(_, text)| text.clone())
        .expect("docs/src/SUMMARY.md exists");
    let src = testkit::workspace_root().join("docs/src");
    let included = included_pages();
    for (path, _) in &pages {
        if included.contains_key(path) {
            continue;
        }
        let relative = path
            .strip_prefix(&src)
            .expect("under docs/src")
            .to_string_lossy()
            .into_owned();
        // practice/lessonN.md are sections each chapter includes, not pages.
        if relative == "SUMMARY.md"
            || relative.starts_with("generated/")
            || relative.starts_with("practice/")
        {
            continue;
        }
        assert!(
            summary.contains(&format!("({relative})")),
            "{relative} is not in SUMMARY.md: readers would never reach it"
        );
    }
}
