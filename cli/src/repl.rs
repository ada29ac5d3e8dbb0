//! The REPL. Statements end with `;` and may span lines (the validator keeps
//! the input open until a `;` ends it outside strings and comments);
//! history is kept in the user's data directory. Tab completes keywords,
//! names, columns and connector options, and SQL is coloured as it is
//! typed. A `SELECT` prints batch after batch until Ctrl-C (or `s` and
//! Enter) stops it and returns to the prompt; while it prints, `p` pauses
//! the output (the query goes on), `r` resumes it and `l N` prints at most
//! N rows per batch (`foreground.rs`). `INSERT INTO` queries run in the
//! background (`SHOW QUERIES`, `\d`, `STOP QUERY`). Ctrl-D exits.

use std::borrow::Cow;
use std::path::PathBuf;
use std::process::ExitCode;

use brooklet::{Executed, Highlight, StreamingContext};
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper, history::DefaultHistory};

use crate::foreground;
use crate::render;

/// The backslash commands, for `\?` and completion.
const COMMANDS: &[(&str, &str)] = &[
    ("\\?", "this help"),
    (
        "\\d",
        "sources, tables, sinks and queries; \\d NAME for one of them",
    ),
    ("\\pause", "stop printing console output (queries go on)"),
    ("\\resume", "print console output again"),
    (
        "\\limit",
        "\\limit N: print at most N rows per batch; \\limit off",
    ),
    ("\\q", "quit (or Ctrl-D)"),
];

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
  SET batch.interval = '1 second';   SET ui.address = '127.0.0.1:4040';
  SELECT ...;                   runs until Ctrl-C, printing every batch; meanwhile
                                p + Enter pauses the output, r resumes, l N limits rows, s stops
  INSERT INTO sink SELECT ...;  runs in the background
  EXPLAIN SELECT ...;           the DStream operators it would run
  SHOW QUERIES;  STOP QUERY name;
Tab completes keywords, names, columns and connector options.
Commands:{}",
        list(brooklet::SOURCE_CONNECTORS),
        list(brooklet::SINK_CONNECTORS),
        COMMANDS
            .iter()
            .map(|(command, what)| format!("\n  {command:<8} {what}"))
            .collect::<String>()
    )
}

/// Keeps the input open until a statement ends with `;`, completes and
/// colours it.
struct InputHelper {
    ctx: StreamingContext,
    /// Whether SQL is coloured (not when `NO_COLOR` is set).
    colour: bool,
}

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

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let trimmed = before.trim_start();
        if trimmed.starts_with('\\') {
            let start = pos - trimmed.len();
            return Ok(match trimmed.split_once(' ') {
                // `\d na`: the names `\d` describes.
                Some(("\\d", name)) => {
                    let names = render::names(&self.ctx);
                    let found = names
                        .into_iter()
                        .filter(|n| n.starts_with(name.trim_start()) && n != name.trim_start())
                        .collect();
                    (pos - name.trim_start().len(), found)
                }
                Some(_) => (pos, Vec::new()),
                None => (
                    start,
                    COMMANDS
                        .iter()
                        .map(|(c, _)| c.to_string())
                        .filter(|c| c.starts_with(trimmed) && c != trimmed)
                        .collect(),
                ),
            });
        }
        Ok(self.ctx.complete(line, pos))
    }
}

impl Hinter for InputHelper {
    type Hint = String;
}

impl Highlighter for InputHelper {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        if !self.colour || line.trim_start().starts_with('\\') {
            return Cow::Borrowed(line);
        }
        let spans = brooklet::highlight(line);
        if spans.is_empty() {
            return Cow::Borrowed(line);
        }
        let mut out = String::with_capacity(line.len() + spans.len() * 10);
        let mut at = 0;
        for (range, class) in spans {
            out.push_str(&line[at..range.start]);
            let colour = match class {
                Highlight::Keyword => "\x1b[1;34m",
                Highlight::String => "\x1b[32m",
                Highlight::Number => "\x1b[36m",
                Highlight::Comment => "\x1b[90m",
            };
            out.push_str(colour);
            out.push_str(&line[range.clone()]);
            out.push_str("\x1b[0m");
            at = range.end;
        }
        out.push_str(&line[at..]);
        Cow::Owned(out)
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        // Colours follow every change of the line.
        self.colour && !matches!(kind, CmdKind::MoveCursor)
    }
}

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
            stderr_line!("error: cannot open the terminal: {e}");
            return ExitCode::FAILURE;
        }
    };
    editor.set_helper(Some(InputHelper {
        ctx: ctx.clone(),
        colour: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    stdout_line!(
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
                    "help" => stdout_line!("{}", help()),
                    _ if input.starts_with('\\') => command(&ctx, input),
                    _ => execute(&ctx, input).await,
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                stderr_line!("error: {e}");
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

/// A backslash command.
fn command(ctx: &StreamingContext, input: &str) {
    let (command, argument) = input
        .split_once(char::is_whitespace)
        .map_or((input, ""), |(c, a)| (c, a.trim()));
    let control = ctx.console_control();
    match (command, argument) {
        ("\\?" | "\\h", _) => stdout_line!("{}", help()),
        ("\\d", "") => stdout_text!("{}", render::describe(ctx)),
        ("\\d", name) => match render::describe_one(ctx, name) {
            Some(text) => stdout_text!("{text}"),
            None => {
                stderr_line!(
                    "nothing is named '{name}'; \\d lists sources, tables, sinks and queries"
                )
            }
        },
        ("\\pause", _) => {
            control.pause();
            stdout_line!("console output paused; queries go on (\\resume prints again)");
        }
        ("\\resume", _) => stdout_line!("{}", foreground::resumed(control.resume())),
        ("\\limit", argument) => match foreground::limit(&control, argument) {
            Ok(message) => stdout_line!("{message}"),
            Err(message) => stderr_line!("{message}"),
        },
        _ => stderr_line!("unknown command {input}; \\? lists the commands"),
    }
}

async fn execute(ctx: &StreamingContext, input: &str) {
    let executed = match ctx.execute(input).await {
        Ok(executed) => executed,
        Err(e) => {
            stderr_line!("{}", render::error(&e, e.location(), input, "<input>"));
            return;
        }
    };
    let mut foreground = Vec::new();
    for e in executed {
        match e {
            Executed::Done(message) | Executed::Shown(message) => stdout_line!("{message}"),
            Executed::Insert(handle) => stdout_line!(
                "query '{}' started in the background (\\d lists it)",
                handle.name()
            ),
            Executed::Select(handle) => foreground.push(handle),
        }
    }
    if let Err(e) = ctx.start().await {
        stderr_line!("error: {e}");
        return;
    }
    if foreground.is_empty() {
        return;
    }
    let all = futures_join(&foreground);
    let control = ctx.console_control();
    let paused_before = control.is_paused();
    if paused_before {
        stderr_line!("console output is paused (\\resume, or r + Enter, prints it again)");
    }
    let keys = foreground::Keys::read();
    let stop = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => stdout_line!("^C query stopped"),
            () = keys.until_stop(&control) => stdout_line!("query stopped"),
        }
    };
    tokio::select! {
        results = all => {
            for (handle, result) in foreground.iter().zip(results) {
                match result {
                    Ok(()) => stdout_line!("query '{}' ended ({})", handle.name(), handle.status()),
                    Err(e) => stderr_line!("{}", render::error(&e, None, input, "<input>")),
                }
            }
        }
        () = stop => {
            for handle in &foreground {
                let _ = handle.stop().await;
            }
        }
    }
    // A pause made for this query ends with it; one made before stays.
    if !paused_before && control.is_paused() {
        control.resume();
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
