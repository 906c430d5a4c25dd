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

/// How many strong and emphasised spans `text` has as Markdown, and any
/// `**` or `__` left over as text (a span CommonMark did not close).
fn emphasis(text: &str) -> (usize, usize, Vec<String>) {
    use pulldown_cmark::{Event, Parser, Tag};
    let (mut strong, mut emphasis, mut stray) = (0, 0, Vec::new());
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Strong) => strong += 1,
            Event::Start(Tag::Emphasis) => emphasis += 1,
            Event::Text(text) if text.contains("**") || text.contains("__") => {
                stray.push(text.into_string());
            }
            _ => {}
        }
    }
    (strong, emphasis, stray)
}

/// Bold and italics come through translation as spans, not as asterisks:
/// CommonMark closes `**` only where it is right-flanking, so `**直接。**地址`
/// (punctuation before the `**`, a letter after it) stays literal text;
/// `**直接**。地址` is bold.
#[test]
fn bold_and_italics_survive_translation() {
    let mut problems = Vec::new();
    for entry in catalogue() {
        if entry.msgstr.is_empty() || entry.msgid == entry.msgstr {
            continue;
        }
        let (strong, emphasised, _) = emphasis(&entry.msgid);
        let (strong_zh, emphasised_zh, stray) = emphasis(&entry.msgstr);
        if (strong, emphasised) != (strong_zh, emphasised_zh) || !stray.is_empty() {
            problems.push(format!(
                "{}\n    English: {strong} bold, {emphasised} italic; Chinese: {strong_zh} bold, {emphasised_zh} italic{}",
                preview(&entry.msgid),
                if stray.is_empty() {
                    String::new()
                } else {
                    format!("; left as text: {stray:?}")
                }
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} translations lose bold or italics (move the punctuation outside the span, or add a space after it):\n{}",
        problems.len(),
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

/// The SVG files directly in `folder`: (path, file name).
fn svg_files(folder: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let entries = std::fs::read_dir(folder)
        .unwrap_or_else(|err| panic!("cannot list {}: {err}", folder.display()));
    let mut files: Vec<_> = entries
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "svg"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            (path, name)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_figure_has_its_chinese_version() {
    let images = root().join("docs/src/images");
    let mut problems = Vec::new();
    for (_, name) in svg_files(&images) {
        if !images.join("zh-CN").join(&name).is_file() {
            problems.push(format!("images/zh-CN/{name} is missing"));
        }
    }
    // The same drawing: only the text and the fonts named may differ, so a
    // changed English figure shows here until its Chinese one follows.
    let drawing = |path: &std::path::Path| {
        let svg = std::fs::read_to_string(path).unwrap_or_default();
        let text = Regex::new(r#">[^<]*<|font-family="[^"]*"|aria-label="[^"]*""#).expect("regex");
        text.replace_all(&svg, "><").into_owned()
    };
    for (path, name) in svg_files(&images) {
        let chinese = images.join("zh-CN").join(name);
        if chinese.is_file() && drawing(&path) != drawing(&chinese) {
            problems.push(format!(
                "{} is not the same drawing as the English one",
                chinese.display()
            ));
        }
    }
    let figure = Regex::new(r"(images|generated)/([\w.-]+\.svg)").expect("regex");
    for entry in catalogue() {
        for used in figure.captures_iter(&entry.msgid) {
            let chinese = format!("{}/zh-CN/{}", &used[1], &used[2]);
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

/// The words of the charts the benchmark and the NAT matrix draw, in
/// 简体中文. Axis numbers and the formula stay as they are.
const CHART_TEXT: &[(&str, &str)] = &[
    (
        "Birthday punch: k = 32 of N = 1024 ports",
        "生日打洞：N = 1024 个端口中开 k = 32 个",
    ),
    (
        "Closed loop: p99 latency (every round counted)",
        "闭环：p99 延迟（每一轮都计入）",
    ),
    ("Closed loop: round trips per second", "闭环：每秒往返次数"),
    (
        "Open loop: fork per client (tools/fork-echo)",
        "开环：每客户端 fork 一个进程（tools/fork-echo）",
    ),
    (
        "Open loop: lesson 4 (thread per client)",
        "开环：第 4 课（每客户端一线程）",
    ),
    (
        "Open loop: lesson 5 (epoll, one thread)",
        "开环：第 5 课（epoll，单线程）",
    ),
    (
        "Open loop: ncat --exec cat (relay + cat per client)",
        "开环：ncat --exec cat（中继 + 每客户端一个 cat）",
    ),
    (
        "Open loop: tokio (tools/tokio-echo)",
        "开环：tokio（tools/tokio-echo）",
    ),
    ("connections (log scale)", "连接数（对数刻度）"),
    ("fork per client · 4096 B", "每客户端 fork · 4096 B"),
    ("fork per client · 64 B", "每客户端 fork · 64 B"),
    (
        "latency from the due time, µs (log scale)",
        "自本该发出时刻起的延迟，µs（对数刻度）",
    ),
    ("lesson 4 · 4096 B", "第 4 课 · 4096 B"),
    ("lesson 4 · 64 B", "第 4 课 · 64 B"),
    ("lesson 5 · 4096 B", "第 5 课 · 4096 B"),
    ("lesson 5 · 64 B", "第 5 课 · 64 B"),
    ("max", "最大值"),
    ("measured", "实测"),
    ("ncat --exec cat · 4096 B", "ncat --exec cat · 4096 B"),
    ("ncat --exec cat · 64 B", "ncat --exec cat · 64 B"),
    ("offered round trips/s", "施加的往返次数/秒"),
    ("p50", "p50"),
    ("p99", "p99"),
    ("p99 latency, µs (log scale)", "p99 延迟，µs（对数刻度）"),
    ("p99.9", "p99.9"),
    ("P = 1 − (1 − k/N)^n", "P = 1 − (1 − k/N)^n"),
    ("probes sent (n)", "已发探测包（n）"),
    ("round trips/s", "往返次数/秒"),
    ("success (%)", "成功率（%）"),
    ("tokio · 4096 B", "tokio · 4096 B"),
    ("tokio · 64 B", "tokio · 64 B"),
];

/// A generated chart with its words in 简体中文 and a CJK font named.
fn chart_in_chinese(svg: &str) -> Result<String, String> {
    let text = Regex::new(r"(<text[^>]*>)(\s*)([^<]*?)(\s*)</text>").expect("regex");
    let mut unknown = Vec::new();
    let chinese = text.replace_all(svg, |found: &regex::Captures| {
        let words = &found[3];
        let translated = if words.chars().any(|c| c.is_ascii_alphabetic()) {
            CHART_TEXT
                .iter()
                .find(|(english, _)| *english == words)
                .map(|(_, chinese)| *chinese)
                .unwrap_or_else(|| {
                    unknown.push(words.to_owned());
                    words
                })
        } else {
            words
        };
        format!("{}{}{translated}{}</text>", &found[1], &found[2], &found[4])
    });
    if !unknown.is_empty() {
        return Err(format!(
            "chart words without a translation in CHART_TEXT: {unknown:?}"
        ));
    }
    Ok(chinese.replace(
        "font-family=\"sans-serif\"",
        "font-family=\"sans-serif, Noto Sans CJK SC, Source Han Sans SC, PingFang SC, Microsoft YaHei\"",
    ))
}

/// The charts under docs/src/generated have Chinese versions under
/// generated/zh-CN, made from them: `UPDATE_GENERATED=1` (`just generated`)
/// rewrites them after `just bench` or `just lab matrix`.
#[test]
fn every_generated_chart_has_its_chinese_version() {
    let generated = root().join("docs/src/generated");
    let mut charts = 0;
    for (path, name) in svg_files(&generated) {
        let english = std::fs::read_to_string(&path).expect("read a chart");
        let chinese = chart_in_chinese(&english).unwrap_or_else(|why| panic!("{name}: {why}"));
        testkit::check_generated(&format!("zh-CN/{name}"), &chinese);
        charts += 1;
    }
    assert!(charts >= 8, "only {charts} generated charts");
}
