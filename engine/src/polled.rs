//! What the sources delivered at one batch time ([`Polled`]): each
//! source's batch or the error that failed it, handed to every operator of
//! the batch, with what is computed once per source batch for all of them
//! (the largest event time, which every event-time operator's watermark
//! clock needs, at parallelism N in each of its N tasks).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;

use crate::error::{Error, Result};
use crate::source::SourceBatch;
use crate::sync::lock;

/// What one source delivered at a batch time, or the error that failed it.
pub(crate) type Delivered = std::result::Result<SourceBatch, Arc<Error>>;

/// `(source, column)` → the largest event time of the source's batch.
type Largest = HashMap<(String, String), Option<i64>>;

/// What each source delivered at one batch time, with each source's
/// largest event time found once: every event-time operator, and at
/// parallelism N every one of its N tasks, follows the sources' watermarks,
/// and one scan of a source's batch serves them all. Clones share what was
/// found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Polled {
    batches: BTreeMap<String, Delivered>,
    largest: Arc<Mutex<Largest>>,
}

impl Polled {
    /// Nothing delivered yet.
    pub(crate) fn new() -> Self {
        Polled::default()
    }

    /// Records what `source` delivered.
    pub(crate) fn insert(&mut self, source: String, delivered: Delivered) {
        self.batches.insert(source, delivered);
    }

    /// What `source` delivered, if it was polled.
    pub(crate) fn get(&self, source: &str) -> Option<&Delivered> {
        self.batches.get(source)
    }

    /// The largest event time in `column` of the rows `source` delivered
    /// (nulls and times out of range left out), scanned once per batch.
    /// `scan` finds it in a batch.
    pub(crate) fn largest_event_time(
        &self,
        source: &str,
        column: &str,
        scan: impl FnOnce(&RecordBatch, &str) -> Result<Option<i64>>,
    ) -> Result<Option<i64>> {
        let Some(Ok(delivered)) = self.get(source) else {
            return Ok(None);
        };
        // Held while scanning: tasks asking at once wait for the one scan.
        let mut largest = lock(&self.largest);
        let key = (source.to_string(), column.to_string());
        if let Some(found) = largest.get(&key) {
            return Ok(*found);
        }
        let found = scan(&delivered.batch, column)?;
        largest.insert(key, found);
        Ok(found)
    }
}

impl FromIterator<(String, Delivered)> for Polled {
    fn from_iter<I: IntoIterator<Item = (String, Delivered)>>(iter: I) -> Self {
        Polled {
            batches: iter.into_iter().collect(),
            largest: Arc::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn delivered(times: &[i64]) -> Delivered {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(times.to_vec()))]).unwrap();
        Ok(SourceBatch {
            batch,
            end_of_input: false,
        })
    }

    #[test]
    fn a_source_batch_is_scanned_once_for_every_clone() {
        let polled: Polled = [("bids".to_string(), delivered(&[5, 9, 2]))]
            .into_iter()
            .collect();
        let scans = AtomicUsize::new(0);
        let scan = |batch: &RecordBatch, _: &str| {
            scans.fetch_add(1, Ordering::SeqCst);
            let times = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            Ok(arrow::compute::max(times))
        };
        let task = polled.clone();
        assert_eq!(
            task.largest_event_time("bids", "ts", scan).unwrap(),
            Some(9)
        );
        assert_eq!(
            polled.largest_event_time("bids", "ts", scan).unwrap(),
            Some(9)
        );
        assert_eq!(scans.load(Ordering::SeqCst), 1);
        assert_eq!(polled.largest_event_time("asks", "ts", scan).unwrap(), None);
        assert_eq!(scans.load(Ordering::SeqCst), 1);
    }
}
