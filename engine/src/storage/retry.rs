//! Retries of object-store requests, and what the process tells about
//! them.
//!
//! A request that fails for a reason that may pass (the server is down,
//! stalled past the request timeout, or answers 5xx) is tried again after
//! 200 ms, then twice as long each time up to 5 s, until it succeeds or
//! its retry budget (`retry_timeout`, default 2 minutes) is spent; then
//! the error is returned and fails the query, whose restart resumes from
//! its checkpoint. Each failed attempt is reported on stderr with what,
//! where and why, and counted in [`StorageHealth`] (shown by the REPL's
//! `\d`); so is the recovery. Answers that are final (not found, a failed
//! precondition, denied access, a bad path) are not retried.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::storage::blocking::wait;

/// The default retry budget of one request.
pub(crate) const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(120);

/// What this process's object-store requests went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageHealth {
    /// Failed attempts that were tried again.
    pub retries: u64,
    /// Requests that still failed when their retry budget was spent.
    pub failures: u64,
    /// The last failure, with what and where.
    pub last_error: Option<String>,
    /// Whether a request is failing right now (retried, not yet answered).
    pub failing: bool,
}

static HEALTH: Mutex<StorageHealth> = Mutex::new(StorageHealth {
    retries: 0,
    failures: 0,
    last_error: None,
    failing: false,
});

/// What this process's object-store requests went through so far.
pub fn storage_health() -> StorageHealth {
    HEALTH.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn note(update: impl FnOnce(&mut StorageHealth)) {
    update(&mut HEALTH.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Whether a failure may pass if the request is tried again.
fn transient(e: &object_store::Error) -> bool {
    use object_store::Error as E;
    !matches!(
        e,
        E::NotFound { .. }
            | E::AlreadyExists { .. }
            | E::Precondition { .. }
            | E::NotModified { .. }
            | E::InvalidPath { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::PermissionDenied { .. }
            | E::Unauthenticated { .. }
            | E::UnknownConfigurationKey { .. }
    )
}

/// The retries of one request: tells of each failure and waits before
/// the next attempt, while the failure may pass and the budget lasts.
pub(crate) struct Retries<'a> {
    what: &'a str,
    location: &'a str,
    budget: Duration,
    started: Instant,
    backoff: Duration,
    tries: u64,
}

impl<'a> Retries<'a> {
    /// The retries of `what` on `location`, within `budget`.
    pub(crate) fn new(what: &'a str, location: &'a str, budget: Duration) -> Self {
        Retries {
            what,
            location,
            budget,
            started: Instant::now(),
            backoff: Duration::from_millis(200),
            tries: 0,
        }
    }

    /// After a failed attempt: `Ok` once it has waited for the next one,
    /// or the error back when it is final or the budget is spent.
    pub(crate) fn failed(&mut self, e: object_store::Error) -> object_store::Result<()> {
        if !transient(&e) {
            return Err(e);
        }
        if self.started.elapsed() + self.backoff > self.budget {
            let message = format!(
                "{} {} failed: {e}; gave up after {} retries in {:.1} s",
                self.what,
                self.location,
                self.tries,
                self.started.elapsed().as_secs_f64()
            );
            crate::notice::to_stderr(&message);
            note(|h| {
                h.failures += 1;
                h.failing = false;
                h.last_error = Some(message);
            });
            return Err(e);
        }
        self.tries += 1;
        let message = format!("{} {} failed: {e}", self.what, self.location);
        crate::notice::to_stderr(&format!(
            "{message}; retrying in {} ms (attempt {})",
            self.backoff.as_millis(),
            self.tries + 1
        ));
        note(|h| {
            h.retries += 1;
            h.failing = true;
            h.last_error = Some(message);
        });
        std::thread::sleep(self.backoff);
        self.backoff = (self.backoff * 2).min(Duration::from_secs(5));
        Ok(())
    }

    /// After the attempt that succeeded.
    pub(crate) fn succeeded(&self) {
        if self.tries > 0 {
            crate::notice::to_stderr(&format!(
                "{} {} succeeded after {} retries",
                self.what, self.location, self.tries
            ));
            note(|h| h.failing = false);
        }
    }
}

/// Runs the request `attempt` makes, again while it fails transiently and
/// `budget` lasts; `what` and `location` name it in reports. The final
/// answer is returned as `object_store` gave it, so callers can match
/// not-found and precondition failures.
pub(crate) fn retrying<T, F, Fut>(
    what: &str,
    location: &str,
    budget: Duration,
    attempt: F,
) -> Result<object_store::Result<T>>
where
    F: Fn() -> Fut,
    Fut: Future<Output = object_store::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut retries = Retries::new(what, location, budget);
    loop {
        match wait(attempt())? {
            Ok(value) => {
                retries.succeeded();
                return Ok(Ok(value));
            }
            Err(e) => {
                if let Err(e) = retries.failed(e) {
                    return Ok(Err(e));
                }
            }
        }
    }
}

/// An object-store error as the engine's, naming what failed where.
pub(crate) fn storage_error(what: &str, location: &str, e: object_store::Error) -> Error {
    Error::Storage(format!("cannot {what} {location}: {e}"))
}
