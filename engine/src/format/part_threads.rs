//! The threads that decode the other parts of a large chunk while the
//! decoder's own thread decodes the first (`SET parallelism = N`: N − 1 of
//! them per decoder).
//!
//! They start with the first chunk worth cutting and live as long as the
//! decoder, each with a decoder of its own made with the same settings.
//! One thread per part per chunk was tried first: each new thread's
//! allocator took fresh memory, and the kernel spent about a sixth of the
//! run zeroing pages for it. A thread that lives on reuses what it freed.
//!
//! A source that makes a decoder per file or per batch (files, Kafka)
//! shares one set of threads between its decoders ([`SharedPartThreads`]),
//! so that they too live as long as the source. Decoders take turns: one
//! that finds the threads busy decodes its chunk in order on its own
//! thread.
//!
//! A part is copied to its thread (a copy costs a few percent of decoding
//! it). A thread that is gone (it panicked) gives no rows for its part,
//! which its decoder then decodes in order, as it does a part with a bad
//! record.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use super::RecordDecoder;

/// What a thread made of one part: its lines and rows, when every line of
/// it is a good record (`RecordDecoder::decode_clean`).
type Decoded = Option<(u64, RecordBatch)>;

/// The part threads of one decoder, or of the decoders of one source in
/// turn: started by the first chunk worth cutting.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPartThreads(pub(super) Arc<Mutex<Option<PartThreads>>>);

/// Threads decoding parts of chunks.
#[derive(Debug)]
pub(super) struct PartThreads {
    threads: Vec<PartThread>,
}

/// One thread's channels: parts to it, what it decoded back.
#[derive(Debug)]
struct PartThread {
    parts: Sender<Vec<u8>>,
    decoded: Receiver<Decoded>,
}

impl PartThreads {
    /// Starts `count` threads, each decoding as `decoder` does.
    pub(super) fn start(decoder: &RecordDecoder, count: usize) -> Self {
        let threads = (0..count)
            .map(|_| {
                let own = decoder.settings_copy();
                let (parts, asked) = channel::<Vec<u8>>();
                let (done, decoded) = channel();
                std::thread::spawn(move || {
                    for part in asked {
                        if done.send(own.decode_clean(&part, false)).is_err() {
                            return;
                        }
                    }
                });
                PartThread { parts, decoded }
            })
            .collect();
        PartThreads { threads }
    }

    /// How many threads there are.
    pub(super) fn len(&self) -> usize {
        self.threads.len()
    }

    /// Gives part `i` of `parts` to thread `i` (at most one part each).
    pub(super) fn send(&self, parts: &[&[u8]]) {
        for (thread, part) in self.threads.iter().zip(parts) {
            // A thread that is gone answers nothing; `receive` says so.
            let _ = thread.parts.send(part.to_vec());
        }
    }

    /// What the first `n` threads made of the parts just sent, in order.
    pub(super) fn receive(&self, n: usize) -> Vec<Decoded> {
        self.threads[..n]
            .iter()
            .map(|thread| thread.decoded.recv().ok().flatten())
            .collect()
    }
}
