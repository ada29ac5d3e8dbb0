//! Every command of the README's `sh` blocks works as written: run from the
//! repository's root by `sh`, with `brooklet` and `cargo run -p
//! brooklet-cli --` standing for the binary under test. A command the
//! README says runs until Ctrl-C must print batches and stop on SIGINT with
//! status 0; every other command must end by itself with status 0. A new
//! command in the README is run by this test too; one that cannot be
//! (the test command itself, benchmarks) is listed with the reason.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

mod support;

use support::{BIN, read_outputs};

/// Commands not run here, and why.
const NOT_RUN: &[(&str, &str)] = &[
    ("cargo test", "the test command itself"),
    (
        "cargo bench",
        "benchmarks take minutes; BENCHMARKS.md records their runs",
    ),
];

/// The examples the README says run until Ctrl-C.
const UNTIL_CTRL_C: &[&str] = &[
    "examples/demo.sql",
    "examples/errors.sql",
    "examples/nexmark.sql",
];

/// Every command line of the README's `sh` blocks, comments removed.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() {
            continue;
        }
        // A comment starts at a `#` after whitespace, outside quotes.
        let mut quote = None;
        let mut end = line.len();
        let mut previous = ' ';
        for (i, c) in line.char_indices() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '#') if previous.is_whitespace() => {
                    end = i;
                    break;
                }
                _ => {}
            }
            previous = c;
        }
        commands.push(line[..end].trim().to_string());
    }
    commands
}

/// The command with the binary under test in place of `brooklet`.
fn with_binary(command: &str) -> String {
    let command = command
        .replace("cargo run -q -p brooklet-cli --", BIN)
        .replace("cargo run -p brooklet-cli --", BIN);
    match command.strip_prefix("brooklet ") {
        Some(rest) => format!("{BIN} {rest}"),
        None => command,
    }
}

/// Stands in for `nc -lk 7777`: accepts the example's connection and sends
/// it a line with an error and one without.
fn line_server() -> Option<thread::JoinHandle<()>> {
    let listener = TcpListener::bind("127.0.0.1:7777").ok()?;
    Some(thread::spawn(move || {
        if let Ok((mut connection, _)) = listener.accept() {
            let _ = connection.write_all(b"disk error\nall good\n");
            thread::sleep(Duration::from_secs(3));
        }
    }))
}

fn run(command: &str, root: &Path) {
    let until_ctrl_c = UNTIL_CTRL_C.iter().any(|e| command.contains(e));
    let server = command
        .contains("examples/errors.sql")
        .then(line_server)
        .flatten();
    // A command stopped by Ctrl-C replaces the shell (`exec`), so the
    // signal reaches it alone, as in a terminal, where the shell ignores it.
    let script = if until_ctrl_c {
        format!("exec {}", with_binary(command))
    } else {
        with_binary(command)
    };
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .current_dir(root)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let limit = if until_ctrl_c {
        Duration::from_secs(6)
    } else {
        Duration::from_secs(60)
    };
    let mut signalled = false;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit && !signalled {
            assert!(
                until_ctrl_c,
                "`{command}` did not end by itself within {limit:?}"
            );
            // Ctrl-C in a terminal signals the whole process group.
            let group = format!("-{}", child.id());
            Command::new("kill")
                .args(["-INT", "--", &group])
                .status()
                .unwrap();
            signalled = true;
        }
        assert!(
            started.elapsed() < limit + Duration::from_secs(30),
            "`{command}` did not stop on Ctrl-C"
        );
        thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = read_outputs(&mut child);
    assert!(status.success(), "`{command}`: {status}\n{stderr}");
    assert!(
        until_ctrl_c == signalled,
        "`{command}` ended by itself, the README says Ctrl-C stops it"
    );
    assert!(stdout.contains("Time: "), "`{command}` printed no batch");
    if let Some(server) = server {
        server.join().unwrap();
        assert!(stdout.contains("disk error"), "{stdout}");
        assert!(!stdout.contains("all good"), "{stdout}");
    }
}

#[test]
fn every_readme_command_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    assert!(commands.len() >= 8, "{commands:?}");
    let mut ran = 0;
    for command in &commands {
        if NOT_RUN
            .iter()
            .any(|(prefix, _)| command.starts_with(prefix))
        {
            continue;
        }
        // `nc -lk 7777` is played by `line_server` for the next command.
        if command.starts_with("nc ") {
            continue;
        }
        run(command, &root);
        ran += 1;
    }
    assert!(ran >= 5, "ran {ran} of {commands:?}");
}
