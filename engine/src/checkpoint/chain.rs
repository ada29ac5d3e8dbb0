//! Incremental checkpoints: a generation writes only the parts of state
//! that changed since the generation before, and refers to the earlier
//! files for the rest (Spark's state store deltas, Flink's incremental
//! RocksDB checkpoints).
//!
//! What may be referred to is what operators call immutable: a part saved
//! with [`StateWriter::batch_once`] under an identity that names one
//! content for the life of the process (a closed pane's partial states, a
//! chunk of keys). A part saved with [`StateWriter::batch`] is written in
//! every generation. The [`Chain`] remembers, per operator, where the last
//! generation's immutable parts are, and gives the next generation's
//! writers the identities they may leave unwritten.
//!
//! **Full generations** (compaction): every part is written again, so that
//! nothing older is needed, when
//!
//! - `full_every` generations have passed since the last full one
//!   (`checkpoint.full_every`, default 10, as Spark's snapshot every 10
//!   deltas), or
//! - the files a generation reads hold more than twice its live bytes plus
//!   1 MiB (parts no longer referred to are garbage in those files).
//!
//! A process starts with an empty chain: its first generation is full. A
//! file stays as long as a generation kept for a restart reads it
//! ([`CheckpointDir::prune`](super::CheckpointDir)).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::state_file::{Encoded, Location, StateWriter};
use crate::time::BatchTime;

/// Bytes of garbage the files of a chain may hold beyond twice the live
/// bytes before a full generation is written.
const SLACK_BYTES: u64 = 1 << 20;

/// Where the immutable parts of the last generation are (module docs).
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// Per operator: part name → (identity, location).
    parts: Vec<HashMap<String, (u64, Location)>>,
    /// The payload size of each file this process wrote.
    sizes: BTreeMap<BatchTime, u64>,
    /// Per generation this process wrote: the files it reads, itself too.
    reads: BTreeMap<BatchTime, BTreeSet<BatchTime>>,
    /// Generations written since the last full one.
    since_full: u64,
    /// A full generation every this many.
    full_every: u64,
    /// Whether the next generation is full.
    full_next: bool,
}

impl Chain {
    /// An empty chain (its first generation is full) that writes a full
    /// generation every `full_every` (at least 1: every one).
    pub(crate) fn new(full_every: u64) -> Self {
        Chain {
            full_every: full_every.max(1),
            full_next: true,
            ..Chain::default()
        }
    }

    /// Before the writers of generation `time`: a generation saved again
    /// at the same batch time (the final save of a graceful stop) replaces
    /// its file, so it must refer to nothing, not even to that file.
    pub(crate) fn prepare(&mut self, time: BatchTime) {
        if self.sizes.contains_key(&time) || self.reads.contains_key(&time) {
            self.full_next = true;
        }
    }

    /// The writer of operator `operator`'s state in the next generation.
    pub(crate) fn writer(&self, operator: usize) -> StateWriter {
        match (self.full_next, self.parts.get(operator)) {
            (false, Some(parts)) => StateWriter::continuing(
                parts
                    .iter()
                    .map(|(name, (id, _))| (name.clone(), *id))
                    .collect(),
            ),
            _ => StateWriter::default(),
        }
    }

    /// Where the last generation holds operator `operator`'s part `name`.
    pub(crate) fn location(&self, operator: usize, name: &str) -> Option<(u64, Location)> {
        self.parts.get(operator)?.get(name).copied()
    }

    /// Learns what generation `time` wrote, and whether the next is full.
    pub(crate) fn record(&mut self, time: BatchTime, encoded: &Encoded) {
        let immutable = encoded.parts.iter().flat_map(HashMap::values);
        let mut reads = BTreeSet::from([time]);
        let (mut live, mut new_immutable) = (0, 0);
        for (_, at) in immutable {
            live += at.end - at.start;
            if at.file == time {
                new_immutable += at.end - at.start;
            } else {
                reads.insert(at.file);
            }
        }
        // What else this file holds is rewritten every generation: live too.
        live += encoded.payload - new_immutable;
        let full = reads.len() == 1;
        self.since_full = if full { 0 } else { self.since_full + 1 };
        self.sizes.insert(time, encoded.payload);
        let held: u64 = reads.iter().filter_map(|f| self.sizes.get(f)).sum();
        self.full_next = self.since_full + 1 >= self.full_every || held > 2 * live + SLACK_BYTES;
        self.parts = encoded.parts.clone();
        self.reads.insert(time, reads);
        // Only the generations a restart may still use matter.
        while self.reads.len() > 4 {
            self.reads.pop_first();
        }
        let needed: BTreeSet<BatchTime> = self.reads.values().flatten().copied().collect();
        self.sizes.retain(|t, _| needed.contains(t));
    }

    /// The files generation `time` reads, if this process wrote it.
    pub(crate) fn reads(&self, time: BatchTime) -> Option<&BTreeSet<BatchTime>> {
        self.reads.get(&time)
    }
}
