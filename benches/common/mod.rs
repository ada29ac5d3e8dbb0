//! What the benchmarks share: the input (10 000 keys, 20 000 rows per
//! 1-second batch, each with an event time inside its batch's second) and a
//! running window query on a manual clock, fed one batch per step.

// Each benchmark uses part of what is shared.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use brooklet::datafusion::arrow::array::{Int64Array, RecordBatch};
use brooklet::datafusion::arrow::datatypes::{DataType, Field, Schema};
use brooklet::datafusion::functions_aggregate::expr_fn::{count, sum};
use brooklet::datafusion::logical_expr::Expr;
use brooklet::engine::Watermark;
use brooklet::prelude::*;
use brooklet::{MemorySource, Notices};

// The allocator the `brooklet` binary uses too, in every benchmark: glibc's
// returns the large buffers of every batch to the kernel and faults them in
// again, which made a run's cost depend on what ran before it; and its
// unmapping on one thread interrupts the others (TLB shootdowns), which
// charged a checkpoint writer's frees to the batches beside it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const KEYS: i64 = 10_000;
pub const ROWS_PER_BATCH: i64 = 20_000;

pub fn batch(schema: &Arc<Schema>, n: i64) -> RecordBatch {
    batch_of(schema, n, KEYS)
}

/// Batch `n` with rows of only `active` keys, the next `active` keys each
/// batch (all of them when `active` is [`KEYS`]).
pub fn batch_of(schema: &Arc<Schema>, n: i64, active: i64) -> RecordBatch {
    let keys: Vec<i64> = (0..ROWS_PER_BATCH)
        .map(|i| match active {
            KEYS => (i * 7919 + n * 31) % KEYS,
            _ => (n * active + (i * 7919) % active) % KEYS,
        })
        .collect();
    let values: Vec<i64> = (0..ROWS_PER_BATCH).map(|i| i % 100).collect();
    // Event times within the batch's second, slightly out of order.
    let times: Vec<i64> = (0..ROWS_PER_BATCH)
        .map(|i| (n - 1) * 1000 + (i * 37) % 1000)
        .collect();
    RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(Int64Array::from(values)),
            Arc::new(Int64Array::from(times)),
        ],
    )
    .unwrap()
}

/// A running window query on a manual clock, fed one batch per step.
pub struct Fixture {
    clock: ManualClock,
    source: MemorySource,
    /// The query.
    pub handle: QueryHandle,
    /// Batches that emitted output.
    pub batches: Arc<AtomicU64>,
    schema: Arc<Schema>,
    /// The last batch time (ms).
    pub time: i64,
    /// How many keys each batch's rows have.
    pub active_keys: i64,
}

impl Fixture {
    /// `window` makes the query's window aggregate from the source stream.
    pub fn new(
        runtime: &tokio::runtime::Runtime,
        window: impl FnOnce(DStream, Vec<Expr>, Vec<Expr>) -> DStream,
    ) -> Self {
        Fixture::with_checkpoint(runtime, window, None)
    }

    /// A fixture whose query checkpoints into `checkpoint` (directory, state
    /// saved every so many batches).
    pub fn with_checkpoint(
        runtime: &tokio::runtime::Runtime,
        window: impl FnOnce(DStream, Vec<Expr>, Vec<Expr>) -> DStream,
        checkpoint: Option<(PathBuf, u64)>,
    ) -> Self {
        runtime.block_on(async {
            let (ctx, clock) = manual_context();
            let schema = Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, false),
                Field::new("v", DataType::Int64, false),
                Field::new("ts", DataType::Int64, false),
            ]));
            let source = MemorySource::new("events", schema.clone());
            ctx.register_source("events", Arc::new(source.clone()))
                .unwrap();
            ctx.engine()
                .set_watermark("events", Watermark::new("ts", Duration::ZERO))
                .unwrap();
            if let Some((dir, every)) = checkpoint {
                ctx.engine().set_checkpoint_dir(Some(dir));
                ctx.engine().set_checkpoint_interval(every).unwrap();
            }
            let batches = Arc::new(AtomicU64::new(0));
            let seen = Arc::clone(&batches);
            let handle = window(
                ctx.source("events").unwrap(),
                vec![col("k")],
                vec![count(lit(1)).alias("n"), sum(col("v")).alias("total")],
            )
            .foreach_batch(move |_, batch| {
                std::hint::black_box(batch.num_rows());
                seen.fetch_add(1, Ordering::Relaxed);
                Ok(())
            })
            .unwrap();
            ctx.start().await.unwrap();
            // The context lives as long as its query handle keeps the engine.
            std::mem::forget(ctx);
            Fixture {
                clock,
                source,
                handle,
                batches,
                schema,
                time: 0,
                active_keys: KEYS,
            }
        })
    }

    /// Runs one batch and waits until it is done.
    pub fn step(&mut self, runtime: &tokio::runtime::Runtime) {
        self.time += 1000;
        self.source
            .push(batch_of(&self.schema, self.time / 1000, self.active_keys))
            .unwrap();
        self.clock.set(self.time);
        let time = self.time;
        runtime.block_on(self.handle.await_batch(BatchTime::from_millis(time)));
    }
}

/// A context with 1-second batches on a manual clock at 0, notices silenced.
pub fn manual_context() -> (StreamingContext, ManualClock) {
    let clock = ManualClock::at(0);
    let ctx = StreamingContext::builder(Duration::from_secs(1))
        .clock(clock.clone())
        .notices(Notices::new(|_| {}))
        .build()
        .unwrap();
    (ctx, clock)
}

/// The runtime the benchmarks drive queries on: one tokio worker.
pub fn runtime() -> tokio::runtime::Runtime {
    runtime_with(1)
}

/// A runtime of `workers` tokio workers: one per task of a query run at
/// that parallelism. Their stacks are as large as the `brooklet` binary's
/// ([`brooklet::RUNTIME_STACK_BYTES`]), so the engine's stack guard never
/// moves a poll to a stack of its own, as in the binary.
pub fn runtime_with(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_stack_size(brooklet::RUNTIME_STACK_BYTES)
        .enable_all()
        .build()
        .unwrap()
}

/// A group of per-batch measurements: 20 samples over 10 seconds each.
pub fn group<'a>(
    c: &'a mut criterion::Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group
}

/// Measures `fixture`'s batches (one iteration: one batch) as `name`.
pub fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    fixture: &mut Fixture,
    runtime: &tokio::runtime::Runtime,
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iterations| {
            let started = std::time::Instant::now();
            for _ in 0..iterations {
                fixture.step(runtime);
            }
            started.elapsed()
        })
    });
}

/// User + system CPU time of the whole process so far (every thread).
pub fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is valid.
    #[allow(unsafe_code)]
    let usage = unsafe {
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()), 0);
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}
