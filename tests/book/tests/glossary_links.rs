//! Every chapter links the first use of each glossary term to its entry, so
//! a beginner who meets "TIME-WAIT" or "backpressure" is one click from what
//! it means. `LINK_GLOSSARY=1 cargo test -p book --test glossary_links`
//! (`just glossary-links`) adds the missing links.

use book::glossary::{TERMS, first_uses, link_first_uses};

fn docs() -> std::path::PathBuf {
    testkit::workspace_root().join("docs/src")
}

/// The pages of SUMMARY.md's numbered part: the chapters and their pages.
fn chapters() -> Vec<String> {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).expect("read SUMMARY.md");
    summary
        .lines()
        .filter(|line| line.trim_start().starts_with("- ["))
        .filter_map(|line| Some(line.split("](").nth(1)?.split(')').next()?.to_owned()))
        .collect()
}

#[test]
fn every_glossary_entry_has_a_term_and_every_term_an_entry() {
    let glossary = std::fs::read_to_string(docs().join("glossary.md")).expect("read glossary.md");
    let anchors: Vec<&str> = glossary
        .match_indices("<a id=\"")
        .filter_map(|(at, open)| glossary[at + open.len()..].split('"').next())
        .collect();
    for anchor in &anchors {
        assert!(
            TERMS.iter().any(|(_, to)| to == anchor),
            "glossary entry #{anchor} has no pattern in book::glossary::TERMS"
        );
    }
    for (pattern, anchor) in TERMS {
        assert!(
            anchors.contains(anchor),
            "term {pattern} points at #{anchor}, which glossary.md does not have"
        );
    }
    let mut sorted = anchors.clone();
    sorted.sort_by_key(|anchor| anchor.replace('-', ""));
    assert_eq!(anchors, sorted, "the glossary is in alphabetical order");
}

#[test]
fn each_chapter_links_the_first_use_of_a_glossary_term() {
    let fix = std::env::var_os("LINK_GLOSSARY").is_some();
    let mut problems = Vec::new();
    for file in chapters() {
        let path = docs().join(&file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
        if fix {
            let linked = link_first_uses(&text);
            if linked != text {
                std::fs::write(&path, linked).unwrap_or_else(|err| panic!("{file}: {err}"));
            }
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (anchor, first) in first_uses(&text) {
            if !first.linked {
                problems.push(format!(
                    "{file}:{}: {} is the first use of glossary.md#{anchor}: make it a link",
                    first.line + 1,
                    &lines[first.line][first.range.clone()]
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "(LINK_GLOSSARY=1 cargo test -p book --test glossary_links adds them)\n{}",
        problems.join("\n")
    );
}
