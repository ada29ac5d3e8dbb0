//! Brooklet's SQL front end: the dialect, the parser, the streaming
//! planner that turns statements into calls on the engine, and whether a
//! text ends a statement ([`is_complete`], for line editors).
//!
//! SQL is parsed with the sqlparser that DataFusion re-exports, so there is
//! one AST; Brooklet's own statements (`CREATE SOURCE`, `CREATE SINK`, `SET`
//! with dotted keys, `EMIT`) are read by a thin wrapper, as DataFusion's
//! `DFParser` does. Queries are planned by DataFusion once and run per batch
//! by the engine.

#![warn(missing_docs)]

pub mod complete;
pub mod dialect;
pub mod error;
mod join;
pub mod limits;
pub mod parser;
pub mod planner;
mod queries;
mod window;

pub use complete::is_complete;
pub use error::{Error, Location, Result};
pub use limits::MAX_NESTING;
pub use parser::{
    Emit, MetadataColumn, ParsedStatement, Statement, parse_statement_text, parse_statements,
};
pub use planner::{Planned, Planner};
