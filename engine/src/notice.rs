//! Notices: warnings and status lines for the user (a socket reconnecting,
//! malformed records skipped in a batch). They go to stderr by default; an
//! embedder or a test may route them elsewhere.

use std::fmt;
use std::sync::Arc;

/// Where notices go.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(&str) + Send + Sync>);

impl Notices {
    /// Notices printed on stderr as `brooklet: <message>`.
    pub fn stderr() -> Self {
        Notices(Arc::new(|message| eprintln!("brooklet: {message}")))
    }

    /// Notices handed to a function.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Notices(Arc::new(f))
    }

    /// Sends one notice.
    pub fn send(&self, message: impl fmt::Display) {
        (self.0)(&message.to_string())
    }
}

impl Default for Notices {
    fn default() -> Self {
        Notices::stderr()
    }
}

impl fmt::Debug for Notices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Notices")
    }
}
