//! The engine's one error type. Every error says what went wrong and where
//! (the source and position, the query, the option), and is classified by
//! who has to act: the user, the outside world, or us.

use std::sync::Arc;

use datafusion::error::DataFusionError;

/// The result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error a `foreach_batch` callback may return: anything that is an error.
pub type CallbackError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Who has to act on an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A bad query, a bad option, bad input data: the user can fix it.
    User,
    /// I/O, the network, a peer: the world outside Brooklet.
    External,
    /// A bug in Brooklet.
    Internal,
}

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A bad setting, option or argument, with what would have been valid.
    #[error("{0}")]
    Config(String),
    /// A query or transformation that cannot be planned.
    #[error("{0}")]
    Plan(String),
    /// A source failed: bad input under `on-error = 'fail'`, or a source that
    /// cannot go on.
    #[error("source '{source_name}': {message}")]
    Source {
        /// The source's name.
        source_name: String,
        /// What happened, with the position.
        message: String,
    },
    /// A batch panicked (in an operator or a user callback): its query
    /// stops with this error; the engine and other queries go on.
    #[error("the batch panicked: {0}")]
    Panic(String),
    /// A checkpoint directory that cannot be used: of another query,
    /// damaged, or not writable.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// An object store (S3 and the like) failed a request, after its
    /// retries, with what and where.
    #[error("object store: {0}")]
    Storage(String),
    /// DataFusion reported an error while planning or running a batch.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// Arrow reported an error (decoding, casting, formatting).
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A user callback (`foreach_batch`) returned an error.
    #[error("output callback failed in batch {time} ms: {source}")]
    Callback {
        /// The batch time, in epoch milliseconds.
        time: i64,
        /// The callback's error.
        #[source]
        source: CallbackError,
    },
    /// A query stopped with an error.
    #[error("query '{query}' failed: {cause}")]
    Query {
        /// The query's name.
        query: String,
        /// Why it failed.
        cause: Arc<Error>,
    },
    /// An error shared by several queries (a failed source they all read).
    #[error(transparent)]
    Shared(Arc<Error>),
    /// A bug in Brooklet.
    #[error("internal error: {0} (this is a bug in Brooklet; please report it)")]
    Internal(String),
}

impl Error {
    /// Who has to act on this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::Plan(_) | Error::Source { .. } | Error::Callback { .. } => {
                ErrorKind::User
            }
            Error::Io { .. } | Error::Checkpoint(_) | Error::Storage(_) => ErrorKind::External,
            Error::Arrow(_) => ErrorKind::User,
            Error::DataFusion(e) => match e {
                DataFusionError::Internal(_) => ErrorKind::Internal,
                DataFusionError::IoError(_) | DataFusionError::ObjectStore(_) => {
                    ErrorKind::External
                }
                _ => ErrorKind::User,
            },
            Error::Query { cause, .. } | Error::Shared(cause) => cause.kind(),
            Error::Internal(_) | Error::Panic(_) => ErrorKind::Internal,
        }
    }

    /// True when the error is a closed output pipe (the reader of the output,
    /// such as `head`, stopped reading), which the binary treats as a normal end.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::BrokenPipe,
            Error::Query { cause, .. } | Error::Shared(cause) => cause.is_broken_pipe(),
            _ => false,
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// DataFusion's reason for `e`, without its wrappers ("Optimizer rule …
/// failed", "Error during planning: ", "Arrow error: ").
pub(crate) fn reason(e: &DataFusionError) -> String {
    match e.find_root() {
        DataFusionError::Plan(message) => message.clone(),
        DataFusionError::ArrowError(arrow, _) => arrow.to_string(),
        root => root.to_string(),
    }
}

/// The names of `schema`'s columns, comma-separated, for messages that
/// list what there is.
pub(crate) fn column_names(schema: &arrow::datatypes::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
