//! [`KeyIndex`]: group keys to dense group indices, with the keys kept for
//! output.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{concat, take};
use arrow::datatypes::SchemaRef;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use crate::error::{Error, Result};

/// Group keys to dense group indices (in order of first appearance), with
/// the keys kept for output. A global aggregate (no keys) has one group.
pub(crate) struct KeyIndex {
    values: Option<Box<dyn GroupValues>>,
    pub(super) schema: SchemaRef,
    pub(super) keys: Vec<Vec<ArrayRef>>,
    pub(super) len: usize,
    /// The chunks of keys checkpoints hold: each one's end (group index)
    /// and id. Keys only grow between compactions, so a checkpoint writes
    /// only the keys added since the one before.
    pub(super) saved: Vec<(usize, u64)>,
}

impl KeyIndex {
    pub(super) fn new(schema: SchemaRef) -> Result<Self> {
        let global = schema.fields().is_empty();
        Ok(KeyIndex {
            values: if global {
                None
            } else {
                Some(new_group_values(Arc::clone(&schema), &GroupOrdering::None)?)
            },
            schema,
            keys: Vec::new(),
            len: usize::from(global),
            saved: Vec::new(),
        })
    }

    /// Whether this is the one group of an aggregate without keys.
    pub(crate) fn is_global(&self) -> bool {
        self.values.is_none()
    }

    /// How many groups there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes held by the index and its keys.
    pub(crate) fn bytes(&self) -> usize {
        self.values.as_ref().map_or(0, |v| v.size())
            + self
                .keys
                .iter()
                .flatten()
                .map(|a| a.get_array_memory_size())
                .sum::<usize>()
    }

    /// The group index of each of the `n` rows of key columns `keys`.
    pub(super) fn intern(
        &mut self,
        keys: &[ArrayRef],
        n: usize,
        groups: &mut Vec<usize>,
    ) -> Result<()> {
        let Some(values) = self.values.as_mut() else {
            groups.clear();
            groups.resize(n, 0);
            return Ok(());
        };
        if n == 0 {
            groups.clear();
            return Ok(());
        }
        values.intern(keys, groups)?;
        let before = self.len;
        let after = values.len();
        if after > before {
            // The first row of each new group, by group index.
            let mut first_rows: Vec<Option<u32>> = vec![None; after - before];
            for (row, &g) in groups.iter().enumerate() {
                if g >= before && first_rows[g - before].is_none() {
                    first_rows[g - before] = Some(row as u32);
                }
            }
            let rows = first_rows
                .into_iter()
                .collect::<Option<Vec<u32>>>()
                .map(UInt32Array::from)
                .ok_or_else(|| Error::Internal("a new group without a row".into()))?;
            self.keys.push(
                keys.iter()
                    .map(|k| Ok(take(k.as_ref(), &rows, None)?))
                    .collect::<Result<Vec<_>>>()?,
            );
            self.len = after;
        }
        Ok(())
    }

    /// The key columns, one row per group index. The keys of new groups
    /// arrive in chunks; they are joined here once, and kept joined.
    pub(crate) fn keys(&mut self) -> Result<Vec<ArrayRef>> {
        if self.keys.len() > 1 {
            let joined = (0..self.schema.fields().len())
                .map(|c| {
                    let parts: Vec<&dyn Array> = self.keys.iter().map(|k| k[c].as_ref()).collect();
                    Ok(concat(&parts)?)
                })
                .collect::<Result<Vec<_>>>()?;
            self.keys = vec![joined];
        }
        Ok(match self.keys.first() {
            Some(keys) => keys.clone(),
            None => self
                .schema
                .fields()
                .iter()
                .map(|f| arrow::array::new_empty_array(f.data_type()))
                .collect(),
        })
    }

    /// When most groups are dead (`live[g]` false), keeps only the live
    /// ones, renumbered `0..` in order, and returns them (to compact the
    /// partials kept with the same list). Compacting only then keeps the
    /// index at most twice the live keys, at an amortized constant cost.
    pub(crate) fn compact_if_sparse(&mut self, live: &[bool]) -> Result<Option<UInt32Array>> {
        let alive = live.iter().filter(|l| **l).count();
        if self.is_global() || alive * 2 >= live.len().max(1) {
            return Ok(None);
        }
        let live: UInt32Array = (0..live.len() as u32)
            .filter(|&g| live[g as usize])
            .collect();
        self.compact(&live)?;
        Ok(Some(live))
    }

    /// Keeps only the groups `live` (ascending), renumbered `0..` in order.
    pub(crate) fn compact(&mut self, live: &UInt32Array) -> Result<()> {
        if self.values.is_none() {
            return Ok(());
        }
        let keys = self
            .keys()?
            .iter()
            .map(|k| Ok(take(k.as_ref(), live, None)?))
            .collect::<Result<Vec<_>>>()?;
        let mut fresh = new_group_values(Arc::clone(&self.schema), &GroupOrdering::None)?;
        let mut groups = Vec::new();
        if !live.is_empty() {
            fresh.intern(&keys, &mut groups)?;
        }
        self.values = Some(fresh);
        self.len = live.len();
        self.saved.clear();
        self.keys = if live.is_empty() {
            Vec::new()
        } else {
            vec![keys]
        };
        Ok(())
    }
}
