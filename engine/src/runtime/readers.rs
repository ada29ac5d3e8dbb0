//! The open sources of the running queries: each is opened by the first
//! query that reads it, polled once per batch time whatever the number of
//! queries reading it (they all get the same batch), and closed when the
//! last of them ends.
//!
//! A batch that ended its source's input says so in the offsets it logs
//! (under [`ENDED`]), so that the batch, run again after a crash, ends the
//! input too: a bounded run's last batch then flushes its windows in the
//! same batch as it did before the crash, and writes the same files.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::operator::Polled;
use crate::runtime::shared::Inner;
use crate::source::{SourceContext, SourceReader};
use crate::time::BatchTime;

/// Each source's position (or offsets), for checkpoints.
pub(super) type Positions = BTreeMap<String, Option<serde_json::Value>>;

/// The runtime's own key in a source's logged offsets: the batch ended the
/// source's input.
const ENDED: &str = "__end_of_input";

/// An open source and how many running queries read it.
struct ActiveReader {
    reader: Box<dyn SourceReader>,
    users: usize,
}

/// The open sources, by name.
#[derive(Default)]
pub(super) struct Readers {
    open: BTreeMap<String, ActiveReader>,
}

impl Readers {
    /// Opens the sources `names` for a query starting after batch `start`
    /// (a source another query already reads keeps that query's position).
    /// Returns the sources it opened, whose positions a restored query may
    /// set. On an error, the query's hold on every source is released.
    pub(super) fn open(
        &mut self,
        inner: &Inner,
        names: &[String],
        start: BatchTime,
    ) -> Result<Vec<String>> {
        let mut opened = Vec::new();
        for (taken, name) in names.iter().enumerate() {
            if let Some(active) = self.open.get_mut(name) {
                active.users += 1;
                continue;
            }
            match Self::open_one(inner, name, start) {
                Ok(reader) => {
                    self.open
                        .insert(name.clone(), ActiveReader { reader, users: 1 });
                    opened.push(name.clone());
                }
                Err(e) => {
                    self.release(&names[..taken]);
                    return Err(e);
                }
            }
        }
        Ok(opened)
    }

    fn open_one(inner: &Inner, name: &str, start: BatchTime) -> Result<Box<dyn SourceReader>> {
        let (source, ctx) = {
            let state = inner.state();
            let registered = state
                .sources
                .get(name)
                .ok_or_else(|| Error::Config(format!("source '{name}' was dropped")))?;
            let ctx = SourceContext {
                name: name.to_string(),
                start,
                interval: state.interval,
                metrics: Arc::clone(&registered.metrics),
                notices: inner.notices.clone(),
                checkpoint_dir: state.checkpoint.as_ref().map(|c| c.root()).transpose()?,
                available_now: state.trigger == crate::trigger::Trigger::AvailableNow,
                decode_tasks: state.parallelism,
            };
            (Arc::clone(&registered.source), ctx)
        };
        source.open(ctx)
    }

    /// Restores the position of source `name`.
    pub(super) fn load(&mut self, name: &str, position: &serde_json::Value) -> Result<()> {
        match self.open.get_mut(name) {
            Some(active) => active.reader.load(position),
            None => Ok(()),
        }
    }

    /// Releases one query's hold on its sources; a source nobody reads is
    /// closed.
    pub(super) fn release(&mut self, names: &[String]) {
        for name in names {
            if let Some(active) = self.open.get_mut(name) {
                active.users -= 1;
                if active.users == 0 {
                    self.open.remove(name);
                }
            }
        }
    }

    /// Waits until every open source has a batch's worth or has ended
    /// (the available-now trigger: see [`SourceReader::ready`]).
    pub(super) async fn ready(&mut self) {
        for active in self.open.values_mut() {
            if let Some(ready) = active.reader.ready() {
                ready.await;
            }
        }
    }

    /// Asks every open source in `wanted` for its batch of `time`: what
    /// it took then for a batch that ran before a restart (`replay`), its
    /// next batch otherwise. Malformed records a source skipped are
    /// reported.
    pub(super) fn poll(
        &mut self,
        inner: &Inner,
        time: BatchTime,
        replay: &BTreeMap<String, serde_json::Value>,
        wanted: &BTreeSet<String>,
    ) -> Polled {
        let mut polled = Polled::new();
        for (name, active) in self.open.iter_mut() {
            if !wanted.contains(name) {
                continue;
            }
            let batch = match replay.get(name) {
                Some(offsets) => active.reader.replay(time, offsets).map(|mut batch| {
                    batch.end_of_input |=
                        offsets.get(ENDED) == Some(&serde_json::Value::Bool(true));
                    batch
                }),
                None => active.reader.next_batch(time),
            };
            polled.insert(name.clone(), batch.map_err(Arc::new));
            let skipped = inner
                .state()
                .sources
                .get(name)
                .and_then(|s| s.metrics.take_skipped());
            if let Some(report) = skipped {
                inner.notices.send(format!(
                    "source '{name}': skipped {} malformed record{} in batch {time}; first at {}",
                    report.count,
                    if report.count == 1 { "" } else { "s" },
                    report.first
                ));
            }
        }
        polled
    }

    /// Each open source's position now (what a state saved now holds).
    pub(super) fn positions(&self) -> Positions {
        self.read(|r| r.save())
    }

    /// What each replayable source took in its last batch (for the offset
    /// log).
    /// Each source's offsets for the batch it gave in `polled`, marked
    /// when that batch ended its input.
    pub(super) fn offsets(&self, polled: &Polled) -> Positions {
        let mut offsets = self.read(|r| r.offsets());
        for (name, logged) in &mut offsets {
            let ended = matches!(polled.get(name), Some(Ok(batch)) if batch.end_of_input);
            if let (true, Some(serde_json::Value::Object(fields))) = (ended, logged.as_mut()) {
                fields.insert(ENDED.into(), serde_json::Value::Bool(true));
            }
        }
        offsets
    }

    fn read(&self, f: fn(&dyn SourceReader) -> Option<serde_json::Value>) -> Positions {
        self.open
            .iter()
            .map(|(name, active)| (name.clone(), f(active.reader.as_ref())))
            .collect()
    }
}
