//! A real S3 API server for tests: moto's (`moto[server]`, pinned; see
//! `../shared/notes/s3-local.md`), started on a free 127.0.0.1 port as a
//! direct child and killed by PID when the [`S3Server`] is dropped (also
//! on panic). It keeps everything in memory: each server starts empty,
//! with one bucket, `brooklet`.
//!
//! The server is found at `$BROOKLET_MOTO_SERVER`, else in the virtual
//! environment `.ci/run` installs (`~/.cache/brooklet/s3-venv`); when
//! neither exists, it is installed there first (about half a minute).
//!
//! Shared by the root crate's tests and the CLI's (`#[path]`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The server's package, pinned.
const PACKAGE: &str = "moto[server]==5.2.5";

/// The bucket every server starts with.
pub const BUCKET: &str = "brooklet";

/// The `moto_server` executable (installed on first use).
pub fn moto_server() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("BROOKLET_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let venv = home.join(".cache/brooklet/s3-venv");
    let bin = venv.join("bin/moto_server");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if bin.is_file() {
        return bin;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "python3 -m venv {}", venv.display());
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", PACKAGE])
        .status()
        .expect("pip runs");
    assert!(status.success(), "pip install {PACKAGE}");
    bin
}

/// An S3 API server on 127.0.0.1, killed when dropped.
pub struct S3Server {
    child: Child,
    port: u16,
}

impl S3Server {
    /// Starts a server on a free port, waits until it answers, and creates
    /// the bucket [`BUCKET`].
    pub fn start() -> S3Server {
        let bin = moto_server();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("moto_server starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken meanwhile: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let server = S3Server { child, port };
                    server.create_bucket();
                    return server;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start");
    }

    /// The server's URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment a process reaches the server with, as AWS tools
    /// take it (moto accepts any credentials).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "brooklet-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "brooklet-test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The same as options of a location.
    pub fn options(&self) -> BTreeMap<String, String> {
        [
            ("endpoint", self.endpoint()),
            ("allow_http", "true".into()),
            ("access_key_id", "brooklet-test".into()),
            ("secret_access_key", "brooklet-test".into()),
            ("region", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `s3://brooklet/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("s3://{BUCKET}/{path}")
    }

    /// The directory `path` of the bucket, for the test to read and write.
    pub fn dir(&self, path: &str) -> brooklet::engine::Dir {
        brooklet::engine::Dir::parse(&self.url(path), &self.options()).unwrap()
    }

    /// Stops the server answering (SIGSTOP) for `pause`, then lets it go
    /// on (SIGCONT): requests hang, as with a stalled server.
    pub fn stall(&self, pause: Duration) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap()
                .success()
        );
        std::thread::sleep(pause);
        assert!(
            Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn create_bucket(&self) {
        // CreateBucket without credentials: moto takes anonymous PUTs.
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "PUT /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "CreateBucket: {answer}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
