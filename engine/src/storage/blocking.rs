//! The bridge from the engine's synchronous I/O (sources, sinks and
//! checkpoints read and write as they do on a local disk) to the async
//! `object_store` clients.
//!
//! Object-store requests run on one small runtime of their own, started on
//! first use, and the caller's thread waits for the answer: the same
//! blocking a local `fs::read` does. Running them on the caller's runtime
//! instead would need `block_in_place`, which a current-thread runtime
//! (embedders', tests') does not allow. The wait is `unconstrained`, so it
//! does not spend (and cannot run out of) tokio's cooperative budget of the
//! task it blocks.

use std::future::Future;
use std::sync::OnceLock;

use crate::error::{Error, Result};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("brooklet-storage")
            .enable_all()
            .build()
            .expect("the storage runtime starts")
    })
}

/// Runs `future` on the storage runtime and waits for its output.
pub(crate) fn wait<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = runtime().spawn(future);
    // Unconstrained: on a tokio worker, a JoinHandle polled past the
    // calling task's cooperative budget would defer its wake-up until the
    // task yields, which a blocked task never does.
    futures::executor::block_on(tokio::task::unconstrained(task))
        .map_err(|e| Error::Internal(format!("an object-store request failed: {e}")))
}
