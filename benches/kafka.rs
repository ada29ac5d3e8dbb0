//! Kafka end to end: a topic of 3 partitions holding N json click records
//! (produced beforehand, not measured), read (1) by a plain consumer of
//! the same client crate (rdkafka: assign, poll every record, touch its
//! bytes) and (2) by Brooklet: the issue's query, counts per user in
//! 10-second event-time tumbling windows, into a blackhole callback. Both
//! run in the same process, one after the other, against the same broker
//! (Tansu, started here, killed on exit). Printed: this process's CPU
//! seconds (user + system; the broker's are not counted) and wall seconds
//! for each, records per CPU-second, and the ratios.
//!
//! `cargo bench --bench kafka` (N = 10 000 000; set `BROOKLET_KAFKA_RECORDS`
//! for another N, and `BROOKLET_KAFKA_CAP` for another
//! `max.records.per.partition.per.batch` than 200 000; `0`: none).

#[path = "../tests/kafka_broker/mod.rs"]
mod kafka_broker;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use brooklet::StopMode;
use brooklet::prelude::*;
use kafka_broker::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

/// This process's CPU time so far (user + system).
fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU and wall seconds of `f`.
fn measure<T>(f: impl FnOnce() -> T) -> (T, f64, f64) {
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    let value = f();
    (value, cpu_seconds() - cpu, wall.elapsed().as_secs_f64())
}

fn plain_consumer(broker: &Broker, records: u64) -> u64 {
    let consumer: BaseConsumer = broker
        .config()
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..3 {
        list.add_partition_offset("clicks", partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let (mut seen, mut bytes) = (0u64, 0u64);
    while seen < records {
        if let Some(Ok(message)) = consumer.poll(Duration::from_secs(5)) {
            bytes += message.payload().map_or(0, |p| p.len() as u64);
            seen += 1;
        }
    }
    bytes
}

fn brooklet_query(broker: &Broker, records: u64, cap: u64) -> u64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let ctx = StreamingContext::builder(Duration::from_millis(100))
            .notices(brooklet::Notices::new(|_| {}))
            .build()
            .unwrap();
        ctx.execute(&format!(
            "CREATE SOURCE clicks (user_id BIGINT, url TEXT, ts TIMESTAMP NOT NULL,
                 WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)
             WITH (connector = 'kafka', bootstrap.servers = '{}', topic = 'clicks',
                   format = 'json', max.records.per.partition.per.batch = {cap})",
            broker.bootstrap()
        ))
        .await
        .unwrap();
        let rows = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&rows);
        ctx.sql(
            "SELECT window_start, window_end, user_id, count(*) AS n
             FROM TABLE(TUMBLE(TABLE clicks, DESCRIPTOR(ts), INTERVAL '10' SECOND))
             GROUP BY window_start, window_end, user_id",
        )
        .await
        .unwrap()
        .foreach_batch(move |_, batch| {
            counter.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        ctx.start().await.unwrap();
        let read = || {
            ctx.engine()
                .sources()
                .into_iter()
                .find(|s| s.name == "clicks")
                .map_or(0, |s| s.metrics.records)
        };
        while read() < records {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ctx.stop(StopMode::Immediate).await.unwrap();
        rows.load(Ordering::Relaxed)
    })
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let records: u64 = std::env::var("BROOKLET_KAFKA_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000_000);
    let broker = Broker::start();
    broker.create_topic("clicks", 3);
    let (_, cpu, wall) = measure(|| {
        broker.produce_many(
            "clicks",
            (0..records).map(|i| {
                let user = (i * 7919) % 10_000;
                // Ten records a millisecond from 2026-01-01T00:00:00.
                let ms = i / 10;
                let ts = format!(
                    "2026-01-01T{:02}:{:02}:{:02}.{:03}",
                    ms / 3_600_000,
                    ms / 60_000 % 60,
                    ms / 1000 % 60,
                    ms % 1000
                );
                let value = format!(
                    r#"{{"user_id": {user}, "url": "/page/{}", "ts": "{ts}"}}"#,
                    i % 100
                );
                ((i % 3) as i32, user.to_string(), value)
            }),
        )
    });
    println!("produced {records} records in {wall:.1} s wall, {cpu:.1} CPU-s (not measured below)");
    let (bytes, plain_cpu, plain_wall) = measure(|| plain_consumer(&broker, records));
    println!(
        "plain consumer: {plain_cpu:.2} CPU-s, {plain_wall:.2} s wall, {:.0} records/CPU-s, {:.0} records/s ({} MB of values)",
        records as f64 / plain_cpu,
        records as f64 / plain_wall,
        bytes / 1_000_000
    );
    let cap: u64 = std::env::var("BROOKLET_KAFKA_CAP")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    let (rows, query_cpu, query_wall) = measure(|| brooklet_query(&broker, records, cap));
    println!(
        "brooklet query: {query_cpu:.2} CPU-s, {query_wall:.2} s wall, {:.0} records/CPU-s, {:.0} records/s ({rows} window rows)",
        records as f64 / query_cpu,
        records as f64 / query_wall
    );
    println!(
        "ratio brooklet/plain: {:.2}x CPU, {:.2}x wall",
        query_cpu / plain_cpu,
        query_wall / plain_wall
    );
}
