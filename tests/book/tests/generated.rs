//! The files under docs/src/generated/ are the same on every machine: no
//! captured session may show where its binary was built (a learner's
//! `CARGO_TARGET_DIR` elsewhere would make the stored file stale), and the
//! folder's README says which command writes each of them.

use book::files_under;

/// Every text file under docs/src/generated, with its name.
fn generated_text_files() -> Vec<(String, String)> {
    let folder = testkit::workspace_root().join("docs/src/generated");
    ["txt", "diff", "md"]
        .iter()
        .flat_map(|ext| files_under(&folder, ext))
        .map(|(path, text)| {
            let name = path
                .strip_prefix(&folder)
                .unwrap_or(&path)
                .display()
                .to_string();
            (name, text)
        })
        .collect()
}

#[test]
fn no_generated_file_contains_a_build_path() {
    let root = testkit::workspace_root().display().to_string();
    let mut forbidden = vec![root, "target/debug".to_owned(), "target/release".to_owned()];
    // An absolute target folder elsewhere (a relative one is a plain word).
    if let Some(dir) =
        std::env::var_os("CARGO_TARGET_DIR").filter(|dir| std::path::Path::new(dir).is_absolute())
    {
        forbidden.push(dir.to_string_lossy().into_owned());
    }
    for (name, text) in generated_text_files() {
        for path in &forbidden {
            assert!(
                !text.contains(path.as_str()),
                "docs/src/generated/{name} contains the build path {path:?}"
            );
        }
    }
}

#[test]
fn the_generated_readme_names_every_file() {
    let folder = testkit::workspace_root().join("docs/src/generated");
    let readme = std::fs::read_to_string(folder.join("README.md"))
        .expect("docs/src/generated/README.md exists");
    let entries = std::fs::read_dir(&folder).expect("list docs/src/generated");
    for entry in entries {
        let name = entry.expect("a folder entry").file_name();
        let name = name.to_string_lossy();
        if name != "README.md" {
            assert!(
                readme.contains(&format!("`{name}`")),
                "docs/src/generated/README.md does not say which command writes `{name}`"
            );
        }
    }
}
