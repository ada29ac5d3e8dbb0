//! The REPL. Statements end with `;` and may span lines (the validator keeps
//! the input open until a `;` ends it outside strings and comments);
//! history is kept in the user's data directory. A `SELECT` prints batch
//! after batch until Ctrl-C stops it and returns to the prompt; `INSERT INTO`
//! queries run in the background (listed by `\d`). Ctrl-D exits.

use std::path::PathBuf;
use std::process::ExitCode;

use brooklet::{Executed, StreamingContext};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Editor, Helper, history::DefaultHistory};

use crate::render;

const PROMPT: &str = "brooklet> ";

/// What `\?` prints; the connectors come from the engine's registry.
fn help() -> String {
    let list = |connectors: &[(&str, &str)]| -> String {
        connectors
            .iter()
            .map(|(name, options)| format!("\n      {name:<10} {options}"))
            .collect()
    };
    format!(
        "Statements end with ';' and may span lines.
  CREATE SOURCE name (cols) WITH (connector = ..., ...);  connectors:{}
  CREATE SINK name WITH (connector = ..., ...);  connectors:{}
  SET batch.interval = '1 second';
  SELECT ...;                   runs until Ctrl-C, printing every batch
  INSERT INTO sink SELECT ...;  runs in the background
Commands:
  \\?   this help
  \\d   sources, sinks and running queries
  \\q   quit (or Ctrl-D)",
        list(brooklet::SOURCE_CONNECTORS),
        list(brooklet::SINK_CONNECTORS)
    )
}

/// Keeps the input open until a statement ends with `;`.
struct InputHelper;

/// True when `input` is complete: a backslash command, empty, or SQL that
/// ends a statement ([`brooklet::statement_is_complete`]: its last token is
/// `;`, outside strings and comments).
pub fn is_complete(input: &str) -> bool {
    let trimmed = input.trim();
    trimmed.is_empty() || trimmed.starts_with('\\') || brooklet::statement_is_complete(trimmed)
}

impl Validator for InputHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        Ok(if is_complete(ctx.input()) {
            ValidationResult::Valid(None)
        } else {
            ValidationResult::Incomplete
        })
    }
}

impl Completer for InputHelper {
    type Candidate = String;
}

impl Hinter for InputHelper {
    type Hint = String;
}

impl Highlighter for InputHelper {}

impl Helper for InputHelper {}

fn history_path() -> Option<PathBuf> {
    let dir = dirs::data_dir()?.join("brooklet");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("history.txt"))
}

/// Runs the REPL until `\q` or Ctrl-D.
pub async fn run(ctx: StreamingContext) -> ExitCode {
    let mut editor: Editor<InputHelper, DefaultHistory> = match Editor::new() {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("error: cannot open the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    editor.set_helper(Some(InputHelper));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!(
        "Brooklet {}: continuous SQL over micro-batches. Statements end with ';'. \\? for help, \\q to quit.",
        env!("CARGO_PKG_VERSION")
    );
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                let input = line.trim();
                if input.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(input);
                match input {
                    "\\q" | "\\quit" | "quit" | "exit" => break,
                    "\\?" | "\\h" | "help" => println!("{}", help()),
                    "\\d" => print!("{}", render::describe(&ctx)),
                    _ if input.starts_with('\\') => {
                        eprintln!("unknown command {input}; \\? lists the commands")
                    }
                    _ => execute(&ctx, input).await,
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    let _ = ctx.stop(brooklet::StopMode::Immediate).await;
    ExitCode::SUCCESS
}

async fn execute(ctx: &StreamingContext, input: &str) {
    let executed = match ctx.execute(input).await {
        Ok(executed) => executed,
        Err(e) => {
            eprintln!("{}", render::error(&e, e.location(), input, "<input>"));
            return;
        }
    };
    let mut foreground = Vec::new();
    for e in executed {
        match e {
            Executed::Done(message) => println!("{message}"),
            Executed::Insert(handle) => println!(
                "query '{}' started in the background (\\d lists it)",
                handle.name()
            ),
            Executed::Select(handle) => foreground.push(handle),
        }
    }
    if let Err(e) = ctx.start().await {
        eprintln!("error: {e}");
        return;
    }
    if foreground.is_empty() {
        return;
    }
    let all = futures_join(&foreground);
    tokio::select! {
        results = all => {
            for (handle, result) in foreground.iter().zip(results) {
                match result {
                    Ok(()) => println!("query '{}' ended ({})", handle.name(), handle.status()),
                    Err(e) => eprintln!("{}", render::error(&e, None, input, "<input>")),
                }
            }
        }
        _ = tokio::signal::ctrl_c() => {
            for handle in &foreground {
                let _ = handle.stop().await;
            }
            println!("^C query stopped");
        }
    }
}

async fn futures_join(handles: &[brooklet::QueryHandle]) -> Vec<brooklet::Result<()>> {
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        // The engine's error as the facade's (transparent: same text, same causes).
        results.push(
            handle
                .await_termination()
                .await
                .map_err(brooklet::Error::from),
        );
    }
    results
}

#[cfg(test)]
mod tests {
    use super::is_complete;

    /// SQL ends at its semicolon (the rules are `brooklet::statement_is_complete`'s);
    /// a backslash command and an empty line end where they are.
    #[test]
    fn input_is_complete_at_a_semicolon_a_command_or_an_empty_line() {
        assert!(is_complete("SELECT line\nFROM lines ;  "));
        assert!(!is_complete("SELECT line\nFROM lines"));
        assert!(is_complete("\\d"));
        assert!(is_complete("  "));
    }
}
