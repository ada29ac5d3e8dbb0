//! The SQL front end's error: a syntax or planning error with the line and
//! column it points at, or an engine error (a bad option, say).

use std::fmt;

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

use crate::limits::MAX_NESTING;

/// The result type of the SQL front end.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A position in the SQL text: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: u64,
    /// 1-based column (in characters).
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What went wrong with a statement.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text is not valid SQL: what was expected and what was found.
    #[error("syntax error: {message}")]
    Syntax {
        /// What was expected, what was found.
        message: String,
        /// Where.
        location: Option<Location>,
    },
    /// Valid SQL that cannot be planned as a continuous query.
    #[error("{message}")]
    Plan {
        /// Why.
        message: String,
        /// Where, when known.
        location: Option<Location>,
    },
    /// The engine refused (a bad option, an unknown source, …).
    #[error(transparent)]
    Engine(#[from] brooklet_engine::Error),
}

impl Error {
    /// Where in the SQL text the error is, when known.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Syntax { location, .. } | Error::Plan { location, .. } => *location,
            Error::Engine(_) => None,
        }
    }

    /// True when the error is a closed output pipe, a normal end for the CLI.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Engine(e) if e.is_broken_pipe())
    }

    /// A statement nesting deeper than [`MAX_NESTING`] levels.
    pub fn too_deep() -> Self {
        Error::Syntax {
            message: format!(
                "the statement nests more than {MAX_NESTING} levels deep, the limit \
                 (brooklet_sql::MAX_NESTING). Split the expression, or write a long OR of \
                 equalities as IN (…)"
            ),
            location: None,
        }
    }

    /// A planning error without a position.
    pub fn plan(message: impl Into<String>) -> Self {
        Error::Plan {
            message: message.into(),
            location: None,
        }
    }

    /// The same error pointing at `location` if it has no position yet.
    pub fn at(self, location: Location) -> Self {
        match self {
            Error::Syntax {
                message,
                location: None,
            } => Error::Syntax {
                message,
                location: Some(location),
            },
            Error::Plan {
                message,
                location: None,
            } => Error::Plan {
                message,
                location: Some(location),
            },
            Error::Engine(e) => Error::Plan {
                message: e.to_string(),
                location: Some(location),
            },
            other => other,
        }
    }
}

impl From<ParserError> for Error {
    fn from(e: ParserError) -> Self {
        let text = match e {
            ParserError::TokenizerError(s) | ParserError::ParserError(s) => s,
            ParserError::RecursionLimitExceeded => return Error::too_deep(),
        };
        // sqlparser appends " at Line: L, Column: C"; keep it as a location.
        match text.rfind(" at Line: ") {
            Some(i) => {
                let location = parse_location(&text[i + " at Line: ".len()..]);
                Error::Syntax {
                    message: text[..i].to_string(),
                    location,
                }
            }
            None => Error::Syntax {
                message: text,
                location: None,
            },
        }
    }
}

fn parse_location(text: &str) -> Option<Location> {
    let (line, column) = text.split_once(", Column: ")?;
    Some(Location {
        line: line.trim().parse().ok()?,
        column: column.trim().parse().ok()?,
    })
}

impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        let location = e
            .diagnostic()
            .and_then(|d| d.span)
            .filter(|s| s.start.line > 0)
            .map(|s| Location {
                line: s.start.line,
                column: s.start.column,
            });
        let e = e.find_root();
        let message = match e {
            DataFusionError::SQL(inner, _) => {
                return Error::from(ParserError::ParserError(inner.to_string()));
            }
            DataFusionError::Plan(m) | DataFusionError::NotImplemented(m) => plain(m),
            other => plain(&other.strip_backtrace()),
        };
        Error::Plan { message, location }
    }
}

/// DataFusion files some errors of the user's as internal ones ("…This
/// issue was likely caused by a bug in DataFusion's code…", for `sum(ts)`):
/// keep what says what was written wrong, drop the bug report.
fn plain(message: &str) -> String {
    const BUG: &str = "This issue was likely caused by a bug in DataFusion's code";
    let Some(bug) = message.find(BUG) else {
        return message.to_string();
    };
    if let Some(start) = message.find("No function matches") {
        return message[start..].trim().to_string();
    }
    let what = message[..bug]
        .trim()
        .trim_start_matches("Internal error: ")
        .trim_end_matches('.');
    format!("this cannot be planned: {what}")
}
