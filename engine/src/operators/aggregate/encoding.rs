//! How partials and group keys are saved to a checkpoint and loaded back:
//! a partial as one batch (group index, row count, then each aggregate's
//! state columns), a key index as the batch of its keys, row `g` for group
//! `g`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, Schema};

use super::aggregation::Aggregation;
use super::key_index::KeyIndex;
use super::partial::Partial;
use crate::checkpoint::{StateReader, StateWriter};
use crate::error::{Error, Result};

impl Aggregation {
    /// Saves `partial` under `name`.
    pub(crate) fn save_partial(
        &self,
        partial: &Partial,
        state: &mut StateWriter,
        name: &str,
    ) -> Result<()> {
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
        state.batch(
            name,
            RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?,
        );
        Ok(())
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
        Ok(Partial {
            groups,
            states,
            counts,
        })
    }
}

impl KeyIndex {
    /// Saves the keys under `name`.
    pub(crate) fn save(&mut self, state: &mut StateWriter, name: &str) -> Result<()> {
        let keys = self.keys()?;
        state.batch(
            name,
            RecordBatch::try_new_with_options(
                Arc::clone(&self.schema),
                keys,
                &arrow::array::RecordBatchOptions::new()
                    .with_row_count(Some(if self.is_global() { 0 } else { self.len })),
            )?,
        );
        Ok(())
    }

    /// Restores the keys saved under `name`: group `g` is the saved row `g`.
    pub(crate) fn load(&mut self, state: &StateReader, name: &str) -> Result<()> {
        if self.is_global() {
            return Ok(());
        }
        let batch = state.batch(name)?;
        let live: UInt32Array = (0..batch.num_rows() as u32).collect();
        self.keys = vec![batch.columns().to_vec()];
        self.len = batch.num_rows();
        self.compact(&live)
    }
}
