//! The learner's progress, `practice/target/progress.json`: for each lesson
//! crate, each stage's last result. `just check` prints it as a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::manifest::Lesson;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Passed,
    Failed,
}

/// crate name → stage number → last result.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Progress(pub BTreeMap<String, BTreeMap<usize, State>>);

impl Progress {
    /// The stored progress; none yet (or unreadable) is an empty one.
    pub fn load(path: &Path) -> Progress {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    pub fn record(&mut self, krate: &str, stage: usize, state: State) {
        self.0
            .entry(krate.to_owned())
            .or_default()
            .insert(stage, state);
    }

    /// Forgets stages after `stage`: a run that stopped there did not try them.
    pub fn forget_after(&mut self, krate: &str, stage: usize) {
        if let Some(stages) = self.0.get_mut(krate) {
            stages.retain(|&number, _| number <= stage);
        }
    }

    /// The table: one row per lesson, one column per stage.
    pub fn table(&self, lessons: &[(Lesson, Option<usize>)]) -> String {
        let width = lessons
            .iter()
            .map(|(l, _)| l.krate.len())
            .max()
            .unwrap_or(0);
        let columns = lessons.iter().filter_map(|(_, n)| *n).max().unwrap_or(0);
        let mut out = format!("{:width$}  stage", "lesson", width = width + 2);
        for number in 1..=columns {
            let _ = write!(out, " {number}");
        }
        out.push('\n');
        for (lesson, stages) in lessons {
            let _ = write!(out, "{} {:width$}       ", lesson.number, lesson.krate);
            match stages {
                None => out.push_str("(no stages yet)"),
                Some(count) => {
                    for number in 1..=*count {
                        let state = self.0.get(&lesson.krate).and_then(|s| s.get(&number));
                        out.push_str(match state {
                            Some(State::Passed) => " ✓",
                            Some(State::Failed) => " ✗",
                            None => " ·",
                        });
                    }
                }
            }
            out.push('\n');
        }
        out.push_str("\n✓ passed   ✗ failed   · not yet tried\n");
        out.push_str(
            "`just check N` checks lesson N; `just practice N` re-checks it on every save.\n",
        );
        out
    }
}
