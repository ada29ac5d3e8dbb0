//! Deep expressions need deep stacks: a chain of 10 000 `+`, `AND` or `||`
//! is a tree 10 000 levels deep, and planning it, compiling it and
//! evaluating it on every batch recurse once per level (DataFusion guards
//! its planner with `recursive`; its expression evaluation, derived
//! `Clone` and `Drop` of plans, and our own rewrites do not). A tokio
//! worker has a 2 MiB stack; an embedder's runtime may have less.
//!
//! [`DeepStack`] polls a future on a stack of its own of [`STACK_BYTES`]
//! when less than [`RED_ZONE_BYTES`] is left, whatever thread polls it
//! (`stacker`, the Rust project's crate for this, which `recursive` and
//! so DataFusion already use). The stack is virtual memory: only the part a
//! plan touches is ever committed. Planning and every query's batches
//! run inside it. What the stack still cannot hold must be refused before it is
//! planned, by whoever builds the expressions (a front end bounding their
//! nesting depth and saying which limit it hit).
//!
//! DataFusion runs a plan of several partitions as tasks it spawns itself,
//! on the runtime that runs the plan, and polls them on that runtime's
//! worker stacks. So when a poll had to move (the runtime's workers have
//! small stacks), [`on_deep_workers`] runs such a plan on a runtime of the
//! engine's own instead, whose workers have [`RUNTIME_STACK_BYTES`]. It is
//! started the first time it is needed, and lives as long as the process.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};

use crate::error::{Error, Result};

/// The stack a deep poll gets: 256 MiB of address space, committed only
/// as used.
pub const STACK_BYTES: usize = 256 << 20;

/// Below this much stack left, a poll moves to a stack of its own. An
/// expression 1 000 levels deep needs about 7 MiB on a debug build; a
/// thread with a stack of at least `2 × RED_ZONE_BYTES` (the `brooklet`
/// binary's runtime) never moves.
pub const RED_ZONE_BYTES: usize = 16 << 20;

/// The thread stack a runtime should give its workers: twice the red zone
/// and more, so that a poll never has to move. Moving costs a fresh
/// mapping of [`STACK_BYTES`] on every poll, its pages faulted in and
/// unmapped after (with a TLB shootdown on every other core), which a
/// runtime of tokio's default 2 MiB stacks pays on every poll of every
/// batch. The `brooklet` binary's runtime and the benchmarks' use it; an
/// embedder should too (`tokio::runtime::Builder::thread_stack_size`).
pub const RUNTIME_STACK_BYTES: usize = 64 << 20;

thread_local! {
    /// Whether the poll on this thread has moved to a stack of its own:
    /// the thread's own stack is too small for deep expressions.
    static MOVED: Cell<bool> = const { Cell::new(false) };
}

/// Sets [`MOVED`] back to what it was, even when the poll panics.
struct Restore(bool);

impl Drop for Restore {
    fn drop(&mut self) {
        MOVED.set(self.0);
    }
}

/// Runs `f` with at least [`RED_ZONE_BYTES`] of stack.
pub fn deep<R>(f: impl FnOnce() -> R) -> R {
    // Where the stack left cannot be told, stacker moves too.
    let enough = stacker::remaining_stack().is_some_and(|left| left >= RED_ZONE_BYTES);
    if enough {
        return f();
    }
    let _restore = Restore(MOVED.replace(true));
    stacker::grow(STACK_BYTES, f)
}

/// The runtime plans of several partitions run on when the workers that
/// poll the batches have small stacks (see the module docs).
static DEEP_WORKERS: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();

/// Whether this poll had to move to a stack of its own: the workers of
/// the runtime polling it have small stacks.
pub(crate) fn moved() -> bool {
    MOVED.get()
}

/// Runs `work` (a plan whose partitions DataFusion spawns as tasks) on the
/// engine's own runtime, whose workers have deep stacks; for a poll that
/// [`moved`].
pub(crate) async fn on_deep_workers<F>(work: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let runtime = DEEP_WORKERS.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("brooklet-partitions")
            .thread_stack_size(RUNTIME_STACK_BYTES)
            .enable_all()
            .build()
    });
    let runtime = runtime.as_ref().map_err(|e| {
        Error::Internal(format!(
            "cannot start the runtime that runs a plan's partitions: {e}"
        ))
    })?;
    match runtime.spawn(work).await {
        Ok(output) => Ok(output),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Internal(format!("a plan's partitions: {e}"))),
    }
}

/// A future whose every poll has a deep stack (see the module docs).
pub struct DeepStack<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> DeepStack<F> {
    /// Wraps `future`.
    pub fn new(future: F) -> Self {
        DeepStack {
            inner: Box::pin(future),
        }
    }
}

impl<F: Future> Future for DeepStack<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = &mut self.get_mut().inner;
        deep(|| inner.as_mut().poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recursion 100 000 levels deep with 1 KiB frames: 100 MiB of stack,
    /// 50 times a tokio worker's.
    fn depth(n: u64) -> u64 {
        let frame = std::hint::black_box([n as u8; 1024]);
        if n == 0 {
            frame[0] as u64
        } else {
            depth(n - 1) + 1 + frame[1] as u64 - frame[1] as u64
        }
    }

    #[tokio::test]
    async fn a_deep_stack_future_recurses_far_past_a_workers_stack() {
        let result = DeepStack::new(async { depth(100_000) }).await;
        assert_eq!(result, 100_000);
    }
}
