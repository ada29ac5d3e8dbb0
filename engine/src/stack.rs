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

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The stack a deep poll gets: 256 MiB of address space, committed only
/// as used.
pub const STACK_BYTES: usize = 256 << 20;

/// Below this much stack left, a poll moves to a stack of its own. An
/// expression 1 000 levels deep needs about 7 MiB on a debug build; a
/// thread with a stack of at least `2 × RED_ZONE_BYTES` (the `brooklet`
/// binary's runtime) never moves.
pub const RED_ZONE_BYTES: usize = 16 << 20;

/// Runs `f` with at least [`RED_ZONE_BYTES`] of stack.
pub fn deep<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE_BYTES, STACK_BYTES, f)
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
