//! Tasks an operator spawns within one batch (a keyed operator's tasks, a
//! global aggregate's slices), waited for together: the batch barrier
//! inside an operator.
//!
//! A task that panicked panics the operator's own task with its payload,
//! as if the work had run inline; a task cancelled (the runtime shutting
//! down) is an error naming `what` it was.
//!
//! Tasks are spawned with [`spawn`], which polls them on a deep stack
//! (`stack.rs`) as the batch itself is: they evaluate the query's
//! expressions too, on whatever stacks the runtime's workers have.

use std::future::Future;

use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::stack::DeepStack;

/// Spawns `task` on the runtime, every poll of it on a deep stack.
pub(crate) fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(DeepStack::new(task))
}

/// Waits for every task of `handles`; their results in the same order.
pub(crate) async fn join_all<T>(handles: Vec<JoinHandle<T>>, what: &str) -> Result<Vec<T>> {
    let mut done = Vec::with_capacity(handles.len());
    let mut cancelled = None;
    for handle in handles {
        match handle.await {
            Ok(value) => done.push(value),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                cancelled.get_or_insert(Error::Internal(format!("{what}: {e}")));
            }
        }
    }
    match cancelled {
        Some(e) => Err(e),
        None => Ok(done),
    }
}
