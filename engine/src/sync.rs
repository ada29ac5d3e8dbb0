//! Locking that survives a panic elsewhere: a poisoned mutex still holds
//! consistent data here (every critical section is a plain update), so the
//! engine goes on instead of propagating the panic.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poisoning.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
