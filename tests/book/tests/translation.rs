//! The Chinese edition never falls behind the English one, and says the
//! same things: every message of the English book has a translation that is
//! not fuzzy, code stays as the programs print it, every number is the same
//! number, every glossary term is rendered the same way everywhere, and
//! every figure has its Chinese version. (`just ci` also re-extracts the
//! English messages and checks that po/messages.pot is current.)

use std::collections::BTreeMap;
use std::sync::LazyLock;

use book::po::{self, Entry};
use regex::Regex;

fn root() -> std::path::PathBuf {
    testkit::workspace_root()
}

/// po/zh-CN.po, or the catalogue `ZH_CN_PO` names (a translator checks a
/// part of the work before it is merged).
fn catalogue_path() -> std::path::PathBuf {
    std::env::var_os("ZH_CN_PO").map_or_else(|| root().join("po/zh-CN.po"), Into::into)
}

fn catalogue() -> Vec<Entry> {
    po::read(&catalogue_path())
}

#[test]
fn every_message_of_the_english_book_has_a_chinese_translation() {
    let template: Vec<String> = po::read(&root().join("po/messages.pot"))
        .into_iter()
        .map(|entry| entry.msgid)
        .collect();
    let translated: BTreeMap<String, Entry> = catalogue()
        .into_iter()
        .map(|entry| (entry.msgid.clone(), entry))
        .collect();
    let mut missing = Vec::new();
    for msgid in &template {
        match translated.get(msgid) {
            Some(entry) if entry.fuzzy => missing.push(format!("fuzzy: {}", preview(msgid))),
            Some(entry) if entry.msgstr.is_empty() => {
                missing.push(format!("empty: {}", preview(msgid)));
            }
            Some(_) => {}
            None => missing.push(format!("absent (run `just po`): {}", preview(msgid))),
        }
    }
    assert!(
        template.len() > 500,
        "only {} messages: is po/messages.pot whole?",
        template.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} messages lack a translation in po/zh-CN.po:\n{}",
        missing.len(),
        template.len(),
        missing.join("\n")
    );
}

/// `COPY_CODE=1` (run by `just po`) first gives every untranslated code
/// message itself as its translation.
#[test]
fn code_stays_as_the_programs_print_it() {
    let path = catalogue_path();
    if std::env::var_os("COPY_CODE").is_some() {
        let text = std::fs::read_to_string(&path).expect("read po/zh-CN.po");
        std::fs::write(&path, po::copy_code_messages(&text)).expect("write po/zh-CN.po");
    }
    for entry in catalogue() {
        if po::is_code(&entry.msgid) && !entry.msgstr.is_empty() {
            assert_eq!(
                entry.msgstr, entry.msgid,
                "code is shown as it is, not translated"
            );
        }
    }
}

/// The numbers of a text, thousands separators removed: `65,507` and
/// `65507` are the same number; `2.5` stays one number. Digits inside a
/// word (P2P, IPv4, lesson1) are part of a name, not a number.
fn numbers(text: &str) -> Vec<String> {
    static NUMBER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)*").expect("regex"));
    static GROUPED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\d{1,3}(?:,\d{3})+$").expect("regex"));
    let (number, grouped) = (&*NUMBER, &*GROUPED);
    let in_a_word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphabetic());
    let mut found: Vec<String> = number
        .find_iter(text)
        .filter(|found| {
            !in_a_word(text[..found.start()].chars().next_back())
                && !in_a_word(text[found.end()..].chars().next())
        })
        .map(|found| {
            let digits = found.as_str();
            if grouped.is_match(digits) {
                digits.replace(',', "")
            } else {
                digits.to_owned()
            }
        })
        .collect();
    found.sort();
    found
}

#[test]
fn numbers_in_each_message_match_its_translation() {
    let mut problems = Vec::new();
    for entry in catalogue() {
        if entry.msgstr.is_empty() {
            continue;
        }
        let (english, chinese) = (numbers(&entry.msgid), numbers(&entry.msgstr));
        if english != chinese {
            problems.push(format!(
                "{}\n    English {english:?}\n    Chinese {chinese:?}",
                preview(&entry.msgid)
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "translations whose numbers differ from the English:\n{}",
        problems.join("\n")
    );
}

/// The bilingual term table at the end of the glossary: (English, Chinese).
fn term_table() -> Vec<(String, String)> {
    let glossary = std::fs::read_to_string(root().join("docs/src/glossary.md")).expect("glossary");
    let table = glossary
        .split("\n## English and 简体中文\n")
        .nth(1)
        .expect("the glossary ends with its `## English and 简体中文` table");
    table
        .lines()
        .filter(|line| line.starts_with('|') && !line.contains("---"))
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            Some((cells.first()?.to_string(), cells.get(1)?.to_string()))
        })
        .collect()
}

/// A message's prose: without code spans, link targets, HTML tags and man
/// page names (`signal(7)`), where an English word stays English.
fn prose(text: &str) -> String {
    static STRIP: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"`[^`]*`|\]\([^)]*\)|<[^>]*>|\b\w+\(\d\)").expect("regex"));
    STRIP.replace_all(text, " ").into_owned()
}

#[test]
fn glossary_terms_are_rendered_the_same_way_everywhere() {
    let terms = term_table();
    assert!(
        terms.len() >= 50,
        "only {} terms in the glossary's table",
        terms.len()
    );
    let mut problems = Vec::new();
    let messages: Vec<(String, Entry)> = catalogue()
        .into_iter()
        .filter(|entry| !entry.msgstr.is_empty() && !po::is_code(&entry.msgid))
        .map(|entry| (prose(&entry.msgid), entry))
        .collect();
    for (english, chinese) in &terms {
        if english == chinese {
            continue;
        }
        let term = Regex::new(&format!(r"(?i)\b{}s?\b", regex::escape(english))).expect("regex");
        for (text, entry) in &messages {
            if term.is_match(text) && !entry.msgstr.contains(chinese.as_str()) {
                problems.push(format!("{english} → {chinese}: {}", preview(&entry.msgid)));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "messages that render a glossary term otherwise:\n{}",
        problems.join("\n")
    );
}

#[test]
fn every_figure_has_its_chinese_version() {
    let images = root().join("docs/src/images");
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&images).expect("docs/src/images") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|ext| ext == "svg") {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            if !images.join("zh-CN").join(&name).is_file() {
                problems.push(format!("images/zh-CN/{name} is missing"));
            }
        }
    }
    // The same drawing: only the text and the fonts named may differ, so a
    // changed English figure shows here until its Chinese one follows.
    let drawing = |path: &std::path::Path| {
        let svg = std::fs::read_to_string(path).unwrap_or_default();
        let text = Regex::new(r#">[^<]*<|font-family="[^"]*"|aria-label="[^"]*""#).expect("regex");
        text.replace_all(&svg, "><").into_owned()
    };
    for entry in std::fs::read_dir(&images).expect("docs/src/images") {
        let path = entry.expect("an entry").path();
        let chinese = images
            .join("zh-CN")
            .join(path.file_name().unwrap_or_default());
        if path.extension().is_some_and(|ext| ext == "svg")
            && chinese.is_file()
            && drawing(&path) != drawing(&chinese)
        {
            problems.push(format!(
                "{} is not the same drawing as the English one",
                chinese.display()
            ));
        }
    }
    let figure = Regex::new(r"images/([\w.-]+\.svg)").expect("regex");
    for entry in catalogue() {
        for used in figure.captures_iter(&entry.msgid) {
            let chinese = format!("images/zh-CN/{}", &used[1]);
            if !entry.msgstr.is_empty() && !entry.msgstr.contains(&chinese) {
                problems.push(format!(
                    "the translation should show {chinese}: {}",
                    preview(&entry.msgid)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn preview(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let short: String = line.chars().take(90).collect();
    if short.len() < line.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// The fenced code blocks of a Markdown text, in order.
fn code_blocks(text: &str) -> Vec<String> {
    text.split("```")
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_chinese_readme_links_both_ways_and_shows_the_same_commands() {
    let english = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let chinese = std::fs::read_to_string(root().join("README.zh-CN.md")).expect("README.zh-CN.md");
    assert!(
        english.contains("(README.zh-CN.md)"),
        "README.md links to README.zh-CN.md"
    );
    assert!(
        chinese.contains("(README.md)"),
        "README.zh-CN.md links back to README.md"
    );
    assert_eq!(
        code_blocks(&chinese),
        code_blocks(&english),
        "README.zh-CN.md shows the English README's commands, as they are: update it with README.md"
    );
}
