//! Sinks: where a query's batches go (`CREATE SINK … WITH (connector = …)`
//! and `INSERT INTO sink SELECT …`). A sink is opened once per query that
//! writes to it; its writer is called once per batch time that has output,
//! empty batches included.

pub mod console;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;

pub use console::{ConsoleFormat, ConsoleOptions, ConsoleSink};

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::time::BatchTime;

/// A declared output.
pub trait Sink: Send + Sync + Debug {
    /// The connector's name.
    fn connector(&self) -> &'static str;
    /// A one-line description, for `\d`.
    fn describe(&self) -> String;
    /// A writer for one query.
    fn open(&self) -> Result<Box<dyn SinkWriter>>;
}

/// Writes one query's batches.
pub trait SinkWriter: Send {
    /// Writes the output of batch `time`.
    fn write(&mut self, time: BatchTime, batch: &RecordBatch) -> Result<()>;
}

/// Builds the sink a `CREATE SINK` statement declares.
pub(crate) fn create(
    name: &str,
    options: BTreeMap<String, String>,
    console: &ConsoleOptions,
) -> Result<Arc<dyn Sink>> {
    let mut options = Options::new("sink", name, options)?;
    let sink: Arc<dyn Sink> = match options.connector() {
        "console" | "stdout" | "print" => {
            Arc::new(ConsoleSink::from_options(&mut options, console)?)
        }
        other => {
            return Err(Error::Config(format!(
                "unknown connector '{other}' for sink '{name}'; valid connectors: console"
            )));
        }
    };
    options.finish()?;
    Ok(sink)
}
