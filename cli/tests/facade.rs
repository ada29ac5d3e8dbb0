//! The binary goes through the facade only: `StreamingContext` and the
//! names at the root of the `brooklet` crate. The inner crates stay
//! re-exported (`brooklet::engine`, `brooklet::sql`) for embedders, so the
//! compiler would not notice the CLI reaching past the facade; this test
//! does, by reading `cli/src`.

use std::path::{Path, PathBuf};

/// What the CLI must not write: the inner crates by any path, the
/// engine under the context, and sqlparser (the SQL crate reads SQL).
const FORBIDDEN: &[&str] = &[
    "engine::",
    "sql::",
    "sqlparser",
    ".engine()",
    "brooklet_engine",
    "brooklet_sql",
];

/// `file:line: text` for every line of `text` that names something
/// forbidden (comments too: they should not send readers past the facade).
fn offences(file: &str, text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| FORBIDDEN.iter().any(|f| line.contains(f)))
        .map(|(i, line)| format!("{file}:{}: {}", i + 1, line.trim()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_cli_uses_only_the_facade() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    files.sort();
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let found: Vec<String> = files
        .iter()
        .flat_map(|path| {
            let name = path.strip_prefix(root).unwrap().display().to_string();
            offences(&name, &std::fs::read_to_string(path).unwrap())
        })
        .collect();
    assert!(
        found.is_empty(),
        "the CLI reaches past StreamingContext and the root of the brooklet crate \
         (add what it needs there; see docs/decisions.md, CLI):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_names_the_file_and_line() {
    let text = "use brooklet::StreamingContext;\nlet e: brooklet::engine::Engine;\nctx.engine().sources();\n";
    assert_eq!(
        offences("src/x.rs", text),
        [
            "src/x.rs:2: let e: brooklet::engine::Engine;",
            "src/x.rs:3: ctx.engine().sources();"
        ]
    );
}
