//! Notices: warnings and status lines for the user (a socket reconnecting,
//! malformed records skipped in a batch). They go to stderr by default; an
//! embedder or a test may route them elsewhere.

use std::fmt;
use std::sync::Arc;

/// Writes `brooklet: <line>` on stderr; a stderr that has closed (`2>&1 |
/// head` that ended) drops the line rather than panicking the thread that
/// reports it.
pub(crate) fn to_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "brooklet: {line}");
}

/// Where notices go.
#[derive(Clone)]
pub struct Notices(Arc<dyn Fn(&str) + Send + Sync>);

impl Notices {
    /// Notices printed on stderr as `brooklet: <message>`.
    pub fn stderr() -> Self {
        Notices(Arc::new(to_stderr))
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
