//! Keys typed while a foreground `SELECT` prints: the query's output can be
//! paused, resumed and limited without stopping the query, and the query
//! stopped without Ctrl-C.
//!
//! | line typed | does |
//! |---|---|
//! | `p` | pause the console output (batches go on running, counted) |
//! | `r` | resume it, saying how many batches were not shown |
//! | `l N` | print at most N rows of each batch (`l off`: the default) |
//! | `s` or `q` | stop the query and return to the prompt |
//!
//! The terminal is in its usual line mode while a query runs, so a key
//! counts once Enter is pressed. Lines are read on a thread that polls
//! standard input and stops when the query ends, so that nothing typed
//! after it is taken from the prompt (the thread is joined before the
//! prompt comes back); input that is not a terminal (a piped script) is
//! never read here.

use std::io::{BufRead, IsTerminal};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use brooklet::ConsoleControl;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::sync::mpsc;

/// Lines typed at the terminal while a query runs.
pub struct Keys {
    lines: Option<mpsc::UnboundedReceiver<String>>,
    done: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Keys {
    /// Starts reading lines, if standard input is a terminal.
    pub fn read() -> Self {
        let done = Arc::new(AtomicBool::new(false));
        if !std::io::stdin().is_terminal() {
            return Keys {
                lines: None,
                done,
                reader: None,
            };
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let finished = Arc::clone(&done);
        let reader = std::thread::Builder::new()
            .name("brooklet-keys".into())
            .spawn(move || {
                let stdin = std::io::stdin();
                while !finished.load(Ordering::SeqCst) {
                    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
                    match poll(&mut fds, PollTimeout::from(100u8)) {
                        Ok(0) => continue,
                        Ok(_) => {}
                        Err(_) => return,
                    }
                    // The query may have ended while this waited: what is
                    // typed now is the prompt's.
                    if finished.load(Ordering::SeqCst) {
                        return;
                    }
                    let mut line = String::new();
                    match stdin.lock().read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if tx.send(line).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        match reader {
            Ok(reader) => Keys {
                lines: Some(rx),
                done,
                reader: Some(reader),
            },
            Err(_) => Keys {
                lines: None,
                done,
                reader: None,
            },
        }
    }

    /// Acts on each line until one asks to stop the query; never returns
    /// when input is not read.
    pub async fn until_stop(mut self, control: &ConsoleControl) {
        let Some(lines) = self.lines.as_mut() else {
            return std::future::pending().await;
        };
        while let Some(line) = lines.recv().await {
            match line.trim() {
                "s" | "q" | "stop" => return,
                "p" | "pause" => {
                    control.pause();
                    stderr_line!("output paused; the query goes on (r + Enter resumes, s stops)");
                }
                "r" | "resume" => stderr_line!("{}", resumed(control.resume())),
                other => match other.strip_prefix('l').map(str::trim) {
                    Some(rows) if !rows.is_empty() || other == "l" => match limit(control, rows) {
                        Ok(message) => stderr_line!("{message}"),
                        Err(message) => stderr_line!("{message}"),
                    },
                    _ if other.is_empty() => {}
                    _ => {
                        stderr_line!("keys: p pause, r resume, l N limit rows, s stop (then Enter)")
                    }
                },
            }
        }
        std::future::pending().await
    }
}

impl Drop for Keys {
    /// Stops the reader and waits for it (at most one poll, 100 ms), so
    /// that it is gone before the prompt reads again. The terminal is still
    /// in line mode then, so a line it may be reading is a whole one.
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// What resuming says.
pub fn resumed(held: u64) -> String {
    match held {
        0 => "console output resumed".into(),
        1 => "console output resumed (1 batch was not shown)".into(),
        n => format!("console output resumed ({n} batches were not shown)"),
    }
}

/// `1 row per batch`, `5 rows per batch`.
fn rows_per_batch(rows: usize) -> String {
    format!("{rows} row{} per batch", if rows == 1 { "" } else { "s" })
}

/// `\limit N` / `l N`: at most N rows per batch (`off`: each sink's own).
pub fn limit(control: &ConsoleControl, argument: &str) -> Result<String, String> {
    match argument.trim() {
        "" => Ok(match control.max_rows() {
            Some(rows) => format!("printing at most {}", rows_per_batch(rows)),
            None => "printing each sink's own number of rows per batch".into(),
        }),
        "off" | "none" => {
            control.limit(None);
            Ok("row limit removed: each sink prints its own number of rows".into())
        }
        text => match text.parse::<usize>() {
            Ok(rows) if rows > 0 => {
                control.limit(Some(rows));
                Ok(format!("printing at most {}", rows_per_batch(rows)))
            }
            _ => Err(format!(
                "\\limit takes a number of rows (1 or more) or 'off', not '{text}'"
            )),
        },
    }
}
