//! How partials and group keys are saved to a checkpoint and loaded back:
//! a partial as one batch (group index, row count, then each aggregate's
//! state columns), a key index as the batch of its keys, row `g` for group
//! `g`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Schema};

use super::aggregation::Aggregation;
use super::key_index::KeyIndex;
use super::partial::{Partial, fresh_id};
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};

impl Aggregation {
    /// Saves `partial` under `name` (written once while it lives: a later
    /// save of the same partial refers to the earlier one).
    pub(crate) fn save_partial(
        &self,
        partial: &Partial,
        state: &mut StateWriter,
        name: &str,
    ) -> Result<()> {
        if partial.id == 0 {
            state.batch(name, partial_batch(partial)?);
            return Ok(());
        }
        state.batch_once(name, partial.id, || partial_batch(partial))
    }

    /// The partial saved under `name`.
    pub(crate) fn load_partial(&self, state: &StateReader, name: &str) -> Result<Partial> {
        use arrow::array::{AsArray, UInt64Array};
        let batch = state.batch(name)?;
        if batch.num_rows() == 0 {
            return Ok(Partial::default());
        }
        let widths = self.state_widths()?;
        if batch.num_columns() != 2 + widths.iter().sum::<usize>() {
            return Err(Error::Checkpoint(format!(
                "the saved state '{name}' does not fit the query's aggregates"
            )));
        }
        let u64s = |i: usize| -> Result<&UInt64Array> {
            batch
                .column(i)
                .as_primitive_opt()
                .ok_or_else(|| Error::Checkpoint(format!("the saved state '{name}' is damaged")))
        };
        let groups: Vec<usize> = u64s(0)?.values().iter().map(|&g| g as usize).collect();
        let counts = u64s(1)?.values().to_vec();
        if groups.windows(2).any(|w| w[0] >= w[1]) || counts.contains(&0) {
            return Err(Error::Checkpoint(format!(
                "the saved state '{name}' is damaged (groups out of order or empty)"
            )));
        }
        let mut states = Vec::with_capacity(widths.len());
        let mut at = 2;
        for width in widths {
            states.push(batch.columns()[at..at + width].to_vec());
            at += width;
        }
        Ok(Partial::new(groups, states, counts))
    }
}

/// Chunks of keys a checkpoint refers to before they are written again as
/// one.
const MAX_KEY_CHUNKS: usize = 16;

impl KeyIndex {
    /// Saves the keys under `name`: in chunks, each written once (the
    /// keys added since the last save are a new chunk).
    pub(crate) fn save(&mut self, state: &mut StateWriter, name: &str) -> Result<()> {
        if self.is_global() {
            return Ok(());
        }
        let keys = self.keys()?;
        if self.len > self.saved.last().map_or(0, |&(end, _)| end) {
            self.saved.push((self.len, fresh_id()));
        }
        if self.saved.len() > MAX_KEY_CHUNKS {
            self.saved = vec![(self.len, fresh_id())];
        }
        let ends: Vec<usize> = self.saved.iter().map(|&(end, _)| end).collect();
        state.value(&format!("{name}.chunks"), serde_json::json!(ends));
        let mut start = 0;
        for (i, &(end, id)) in self.saved.iter().enumerate() {
            let schema = Arc::clone(&self.schema);
            let chunk = |start: usize| {
                let columns = keys.iter().map(|k| k.slice(start, end - start)).collect();
                Ok(RecordBatch::try_new(schema, columns)?)
            };
            state.batch_once(format!("{name}.{i}"), id, || chunk(start))?;
            start = end;
        }
        Ok(())
    }

    /// Restores the keys saved under `name`: group `g` is the saved row `g`
    /// (of the chunks together; one batch in checkpoints before chunks).
    pub(crate) fn load(&mut self, state: &StateReader, name: &str) -> Result<()> {
        if self.is_global() {
            return Ok(());
        }
        let batch = if state.has(name) {
            state.batch(name)?.clone()
        } else {
            let chunks = state.i64s(&format!("{name}.chunks"))?;
            let batches = (0..chunks.len())
                .map(|i| state.batch(&format!("{name}.{i}")).cloned())
                .collect::<Result<Vec<_>>>()?;
            arrow::compute::concat_batches(&self.schema, &batches)?
        };
        let live: UInt32Array = (0..batch.num_rows() as u32).collect();
        self.keys = vec![batch.columns().to_vec()];
        self.len = batch.num_rows();
        self.compact(&live)
    }
}

/// A partial as one batch: group index, row count, then each aggregate's
/// state columns.
fn partial_batch(partial: &Partial) -> Result<RecordBatch> {
    use arrow::array::UInt64Array;
    use arrow::datatypes::Field;
    let mut fields = vec![
        Field::new("group", DataType::UInt64, false),
        Field::new("rows", DataType::UInt64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(
            partial.groups.iter().map(|&g| g as u64),
        )),
        Arc::new(UInt64Array::from(partial.counts.clone())),
    ];
    for (a, states) in partial.states.iter().enumerate() {
        for (c, column) in states.iter().enumerate() {
            fields.push(Field::new(
                format!("s{a}_{c}"),
                column.data_type().clone(),
                true,
            ));
            columns.push(Arc::clone(column));
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
