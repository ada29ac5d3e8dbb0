//! The status server: what a job that runs for weeks is watched through.
//!
//! [`StatusServer::start`] starts an HTTP server for an engine on a thread
//! of its own (so that a batch that keeps every worker busy never delays
//! an answer, and a page never delays a batch); the SQL planner owns the
//! one that `SET ui.address` and `StreamingContext::serve_ui` start:
//!
//! - `/` — the status page ([`page`]): queries with their state, timelines
//!   and histograms of their last batches, their operator graphs, sources
//!   and sinks. It refreshes itself every 2 seconds (`/?refresh=5`,
//!   `/?refresh=0` for never).
//! - `/metrics` — Prometheus' text format ([`prometheus`]).
//! - `/api/queries` — JSON for scripts ([`json`]; `?history=1` adds every
//!   retained batch).
//!
//! Every answer reads the engine once ([`snapshot`]) and renders from that
//! reading. The server binds where it is told; the README and
//! [`DEFAULT_ADDRESS`] use loopback, so a job is not visible from other
//! machines until its address says so (`0.0.0.0:4040`, or a reverse
//! proxy), and on loopback it answers loopback `Host` names only. The
//! server holds the engine weakly: it never keeps an engine alive; it ends
//! when [`StatusServer`] is dropped, or at its first request after the
//! engine is gone.
//!
//! The HTTP server is `tiny_http`: a small, synchronous, well-kept server
//! with no async runtime of its own, which is all a few GET endpoints need
//! (hyper's server would pull in more and share the batch runtime).

mod chart;
mod json;
mod page;
mod prometheus;
mod snapshot;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::runtime::shared::Inner;
use snapshot::Snapshot;

/// The default address of the status server (Spark's UI port, loopback).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:4040";

/// How often the page reloads itself unless `?refresh=` says otherwise.
const DEFAULT_REFRESH: Duration = Duration::from_secs(2);

/// A running status server; dropping it stops the server.
pub struct StatusServer {
    server: Arc<Server>,
    address: SocketAddr,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for StatusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusServer")
            .field("address", &self.address)
            .finish()
    }
}

impl StatusServer {
    /// Serves `engine`'s status at `address` (`host:port`; port 0 picks a
    /// free one).
    pub fn start(engine: &Engine, address: &str) -> Result<Self> {
        Self::bind(engine, address, false)
    }

    /// Stops this server and serves `engine` at `address` instead (the
    /// same address may be given: the old listening socket, which
    /// tiny_http closes on a thread of its own, is waited for up to 2
    /// seconds).
    pub fn replace(self, engine: &Engine, address: &str) -> Result<Self> {
        drop(self);
        Self::bind(engine, address, true)
    }

    fn bind(engine: &Engine, address: &str, replacing: bool) -> Result<Self> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let server = loop {
            match Server::http(address) {
                Ok(server) => break server,
                Err(e)
                    if replacing
                        && std::time::Instant::now() < deadline
                        && e.downcast_ref::<std::io::Error>()
                            .is_some_and(|e| e.kind() == std::io::ErrorKind::AddrInUse) =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    return Err(Error::Config(format!(
                        "cannot serve the status page at {address}: {e}"
                    )));
                }
            }
        };
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| Error::Config(format!("{address} is not an IP address")))?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let weak = Arc::downgrade(&engine.inner);
        let loopback = bound.ip().is_loopback();
        let thread = std::thread::Builder::new()
            .name("brooklet-status".into())
            .spawn(move || serve(&serving, &weak, loopback))
            .map_err(|e| Error::io("starting the status server's thread", e))?;
        Ok(StatusServer {
            server,
            address: bound,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for StatusServer {
    /// Wakes the thread, which ends, and waits for it, so that the address
    /// is free when this returns — unless this runs on that thread (the
    /// last handle to the engine was the thread's own), which then ends by
    /// itself.
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take()
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

fn serve(server: &Server, engine: &Weak<Inner>, loopback: bool) {
    for request in server.incoming_requests() {
        if loopback && !from_loopback_name(&request) {
            let _ = request.respond(
                Response::from_string("the status server answers loopback names only\n")
                    .with_status_code(403),
            );
            continue;
        }
        let Some(inner) = engine.upgrade() else {
            let _ =
                request.respond(Response::from_string("the engine is gone").with_status_code(503));
            return;
        };
        let engine = Engine { inner };
        let _ = answer(request, &engine);
    }
}

/// Whether a request names a loopback host (or none): on a loopback
/// address, a `Host` such as `evil.example` is a page elsewhere reading
/// this job through DNS rebinding.
fn from_loopback_name(request: &Request) -> bool {
    let Some(host) = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_ascii_lowercase())
    else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

/// The query parameter `name` of `url`, if given.
fn parameter<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

fn answer(request: Request, engine: &Engine) -> std::io::Result<()> {
    if !matches!(request.method(), Method::Get | Method::Head) {
        return request.respond(
            Response::from_string("only GET is served\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET, HEAD")),
        );
    }
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or("/");
    let (content_type, body) = match path {
        "/" | "/index.html" => {
            let refresh = parameter(&url, "refresh")
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(DEFAULT_REFRESH, Duration::from_secs);
            (
                "text/html; charset=utf-8",
                page::render(&Snapshot::of(engine), refresh),
            )
        }
        "/metrics" => (
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus::render(&Snapshot::of(engine)),
        ),
        "/api/queries" => {
            let history = parameter(&url, "history").is_some_and(|v| v != "0");
            let document = json::render(&Snapshot::of(engine), history);
            ("application/json", format!("{document:#}\n"))
        }
        _ => {
            return request.respond(
                Response::from_string(
                    "not found: the status server serves /, /metrics and /api/queries\n",
                )
                .with_status_code(404),
            );
        }
    };
    request.respond(
        Response::from_string(body)
            .with_header(header("Content-Type", content_type))
            .with_header(header("Cache-Control", "no-store")),
    )
}

#[cfg(test)]
mod tests {
    use super::parameter;

    #[test]
    fn query_parameters_are_read_from_the_url() {
        assert_eq!(parameter("/?refresh=5", "refresh"), Some("5"));
        assert_eq!(
            parameter("/api/queries?x=1&history=1", "history"),
            Some("1")
        );
        assert_eq!(parameter("/api/queries?history", "history"), Some(""));
        assert_eq!(parameter("/", "refresh"), None);
    }
}
