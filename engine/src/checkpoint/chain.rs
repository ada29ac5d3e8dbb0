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
//! **Compaction.** Parts that are no longer referred to are garbage in the
//! files that hold them, and a generation reads every file one of its parts
//! is in. After each generation, when the files it reads hold more than
//! twice its live bytes plus [`SLACK_BYTES`], or number more than
//! [`MAX_FILES`], the next generation writes again the parts of the
//! sparsest files (least live bytes per byte held) until neither holds, so
//! those files are no longer read and are pruned. What was written once
//! and stays live (a long window's closed panes) is not written again.
//! `checkpoint.full_every = N` also writes every N-th generation whole
//! (0, the default: never).
//!
//! A process starts with an empty chain: its first generation is whole. A
//! file stays as long as a generation kept for a restart reads it
//! ([`CheckpointDir::prune`](super::CheckpointDir)).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::state_file::{Encoded, Location, StateWriter};
use crate::time::BatchTime;

/// Bytes of garbage the files a generation reads may hold beyond twice its
/// live bytes before compaction.
pub(crate) const SLACK_BYTES: u64 = 1 << 20;

/// Files a generation may read before compaction.
pub(crate) const MAX_FILES: usize = 32;

/// Where the immutable parts of the last generation are (module docs).
#[derive(Debug, Default)]
pub(crate) struct Chain {
    /// Per operator: part name → (identity, location).
    parts: Vec<HashMap<String, (u64, Location)>>,
    /// The payload size of each file this process wrote.
    sizes: BTreeMap<BatchTime, u64>,
    /// Per generation this process wrote: the files it reads, itself too.
    reads: BTreeMap<BatchTime, BTreeSet<BatchTime>>,
    /// Generations written since the last whole one.
    since_full: u64,
    /// A whole generation every this many (0: never).
    full_every: u64,
    /// Whether the next generation is whole.
    full_next: bool,
    /// Files whose parts the next generation writes again.
    rewrite: BTreeSet<BatchTime>,
    /// Compaction's limits (module docs).
    slack: u64,
    max_files: usize,
}

impl Chain {
    /// An empty chain (its first generation is whole) that writes a whole
    /// generation every `full_every` (0: never).
    pub(crate) fn new(full_every: u64) -> Self {
        Chain::with_limits(full_every, SLACK_BYTES, MAX_FILES)
    }

    /// A chain compacting with other limits than the defaults.
    pub(crate) fn with_limits(full_every: u64, slack: u64, max_files: usize) -> Self {
        Chain {
            full_every,
            full_next: true,
            slack,
            max_files,
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

    /// The writer of operator `operator`'s state in the next generation:
    /// it may leave unwritten the parts not in files being compacted.
    pub(crate) fn writer(&self, operator: usize) -> StateWriter {
        match (self.full_next, self.parts.get(operator)) {
            (false, Some(parts)) => StateWriter::continuing(
                parts
                    .iter()
                    .filter(|(_, (_, at))| !self.rewrite.contains(&at.file))
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

    /// Learns what generation `time` wrote, and what the next rewrites.
    pub(crate) fn record(&mut self, time: BatchTime, encoded: &Encoded) {
        // Live bytes per file read; this file is live whole.
        let mut live_in: BTreeMap<BatchTime, u64> = BTreeMap::from([(time, encoded.payload)]);
        for (_, at) in encoded.parts.iter().flat_map(HashMap::values) {
            if at.file != time {
                *live_in.entry(at.file).or_default() += at.end - at.start;
            }
        }
        let reads: BTreeSet<BatchTime> = live_in.keys().copied().collect();
        self.since_full = if reads.len() == 1 {
            0
        } else {
            self.since_full + 1
        };
        self.sizes.insert(time, encoded.payload);
        self.full_next = self.full_every > 0 && self.since_full + 1 >= self.full_every;
        self.rewrite.clear();
        let size = |f: &BatchTime| self.sizes.get(f).copied().unwrap_or(0);
        let live: u64 = live_in.values().sum();
        let mut held: u64 = reads.iter().map(size).sum();
        let mut files = reads.len();
        // The sparsest files first: least live per byte held.
        let mut candidates: Vec<(BatchTime, u64)> = live_in
            .iter()
            .filter(|(f, _)| **f != time)
            .map(|(f, l)| (*f, *l))
            .collect();
        candidates.sort_by(|(a, la), (b, lb)| {
            // la / size(a) < lb / size(b), without division.
            (u128::from(*la) * u128::from(size(b))).cmp(&(u128::from(*lb) * u128::from(size(a))))
        });
        for (file, file_live) in candidates {
            if held <= 2 * live + self.slack && files <= self.max_files {
                break;
            }
            self.rewrite.insert(file);
            // Its live parts move into the next file.
            held = held - size(&file) + file_live;
            files -= 1;
        }
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
