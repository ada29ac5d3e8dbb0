//! The runtime: what runs a query's batches. The scheduler
//! (`scheduler.rs`) wakes at every batch time, polls each open source once
//! (`readers.rs`) and runs every running query's batch
//! (`running_query.rs`: operators, output, checkpoint, restore); late rows
//! are reported by `late.rs`. The state it shares with the engine's API is
//! in `shared.rs`.

pub(crate) mod catch_up;
mod late;
mod readers;
mod running_query;
pub(crate) mod scheduler;
pub(crate) mod shared;
