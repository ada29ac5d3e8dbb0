//! The Nexmark generator as a source, and the Nexmark queries of
//! `benches/nexmark`: over a small generated run, the windowed ones (q5,
//! q7, q11, q12) and the joins (q3, q4, q8, q9, q20) give what a batch
//! DataFusion query over the same generated events gives; q7's maximum from
//! Rust equals it in SQL; q5 stopped and resumed from its checkpoint emits
//! what an uninterrupted run does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use brooklet::RecordBatch;
use brooklet::datafusion::datasource::MemTable;
use brooklet::datafusion::prelude::SessionContext;

use crate::support::{csv_rows, manual_context};

/// Events per second of event time; a batch (1 s) holds this many events.
const RATE: u64 = 10_000;

/// The sources of `benches/nexmark/ddl.sql`, for `events` events.
fn ddl(events: u64) -> String {
    include_str!("../benches/nexmark/ddl.sql")
        .replace("${EVENTS_PER_SECOND}", &RATE.to_string())
        .replace("${EVENTS}", &events.to_string())
        .replace("${SEED}", "3")
}

/// Runs `query` over `events` generated events to the end: every emitted
/// batch, and the rows as sorted CSV lines.
async fn run(query: &str, events: u64) -> (Vec<String>, Vec<RecordBatch>) {
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&ddl(events)).await.unwrap();
    let stream = ctx.sql(query).await.unwrap();
    let batches = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&batches);
    let handle = stream
        .foreach_batch(move |_, batch| {
            kept.lock().unwrap().push(batch);
            Ok(())
        })
        .unwrap();
    ctx.start().await.unwrap();
    // Batch k (at k s) generates events of event time [k - 1, k) s.
    clock.set((events.div_ceil(RATE) as i64 + 1) * 1000);
    handle.await_termination().await.unwrap();
    let batches = batches.lock().unwrap().clone();
    let mut rows: Vec<String> = batches.iter().flat_map(csv_rows).collect();
    rows.sort();
    (rows, batches)
}

/// `query` run as a batch DataFusion query over every bid of `events`
/// generated events (table `bids`, with `t`, the event time in ms):
/// sorted CSV lines.
async fn batch_query(query: &str, events: u64) -> Vec<String> {
    let (_, bids) = run("SELECT *, CAST(date_time AS BIGINT) AS t FROM bid", events).await;
    let session = SessionContext::new();
    let table = MemTable::try_new(bids[0].schema(), vec![bids]).unwrap();
    session.register_table("bids", Arc::new(table)).unwrap();
    let result = session.sql(query).await.unwrap().collect().await.unwrap();
    let mut rows: Vec<String> = result.iter().flat_map(csv_rows).collect();
    rows.sort();
    rows
}

/// Asserts that the Nexmark query in `file` (its text) emits what `batch`
/// computes over all its input at once.
async fn assert_matches_batch(file: &str, batch: &str, events: u64) {
    let (streamed, _) = run(file, events).await;
    let expected = batch_query(batch, events).await;
    assert!(!expected.is_empty(), "the batch query found nothing");
    assert_eq!(streamed.len(), expected.len());
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn bids_are_92_percent_of_events_with_event_time_at_the_rate() {
    let (rows, _) = run(
        "SELECT count(*) AS n, CAST(max(date_time) AS BIGINT) - CAST(min(date_time) AS BIGINT) AS span FROM bid",
        30_000,
    )
    .await;
    // Three batches of 10 000 events: 9 200 bids each, 1 s of event time
    // apiece (10 000 events/s), the last bid of a batch 0.999 s after its first.
    assert_eq!(rows, ["9200,999", "9200,999", "9200,999"]);
}

/// q5's windows as a batch query: each bid in the five 10-second windows
/// (sliding by 2 s) that hold it, counted per auction; the auctions with
/// their window's largest count.
const Q5_BATCH: &str = "
    WITH counts AS (
      SELECT ws, auction, count(*) AS num FROM
        (SELECT t / 2000 * 2000 - i * 2000 AS ws, auction
         FROM bids CROSS JOIN (VALUES (0), (1), (2), (3), (4)) AS o(i))
      GROUP BY ws, auction)
    SELECT c.auction, c.num, to_timestamp_millis(c.ws), to_timestamp_millis(c.ws + 10000)
    FROM counts c JOIN (SELECT ws, max(num) AS maxn FROM counts GROUP BY ws) m
      ON c.ws = m.ws AND c.num >= m.maxn";

#[tokio::test]
async fn q5_hot_items_equal_a_batch_query() {
    assert_matches_batch(include_str!("../benches/nexmark/q5.sql"), Q5_BATCH, 60_000).await;
}

#[tokio::test]
async fn q5_in_nexmark_own_text_with_two_windows_equals_a_batch_query() {
    // Flink's q5 writes the window twice: two window operators, closing in
    // the same batches, joined there.
    let nexmark = "
        SELECT auction_bids.auction, auction_bids.num, auction_bids.starttime, auction_bids.endtime
        FROM (
          SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
          FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
          GROUP BY auction, window_start, window_end
        ) AS auction_bids
        JOIN (
          SELECT max(count_bids.num) AS maxn, count_bids.starttime, count_bids.endtime
          FROM (
            SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
            FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
            GROUP BY auction, window_start, window_end
          ) AS count_bids
          GROUP BY count_bids.starttime, count_bids.endtime
        ) AS max_bids
        ON auction_bids.starttime = max_bids.starttime
           AND auction_bids.endtime = max_bids.endtime
           AND auction_bids.num >= max_bids.maxn";
    assert_matches_batch(nexmark, Q5_BATCH, 60_000).await;
}

#[tokio::test]
async fn q7_highest_bids_per_tumbling_window_equal_a_batch_query() {
    assert_matches_batch(
        include_str!("../benches/nexmark/q7.sql"),
        "SELECT b.auction, b.price, b.bidder, b.date_time, b.extra
         FROM bids b JOIN (SELECT t / 10000 AS w, max(price) AS maxprice FROM bids GROUP BY t / 10000) m
           ON b.t / 10000 = m.w AND b.price = m.maxprice",
        250_000,
    )
    .await;
}

/// q7's aggregate alone: the highest price of each 10-second window.
const Q7_MAX: &str = "SELECT max(price) AS maxprice, window_start, window_end
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end";

#[tokio::test]
async fn q7_maximum_per_tumbling_window_equals_a_batch_query() {
    assert_matches_batch(
        Q7_MAX,
        "SELECT max(price), to_timestamp_millis(t / 10000 * 10000), to_timestamp_millis(t / 10000 * 10000 + 10000)
         FROM bids GROUP BY t / 10000",
        250_000,
    )
    .await;
}

/// Sessions per bidder as a batch query: a bid at most `gap` ms after the
/// bidder's previous one continues its session (sessions that touch merge);
/// a session is [first bid, last bid + gap).
fn sessions_batch(gap: u64) -> String {
    format!(
        "WITH marked AS (
           SELECT bidder, t,
                  CASE WHEN t - lag(t) OVER (PARTITION BY bidder ORDER BY t) <= {gap} THEN 0 ELSE 1 END AS starts
           FROM bids),
         numbered AS (
           SELECT bidder, t, sum(starts) OVER (PARTITION BY bidder ORDER BY t ROWS UNBOUNDED PRECEDING) AS session
           FROM marked)
         SELECT bidder, count(*), to_timestamp_millis(min(t)), to_timestamp_millis(max(t) + {gap})
         FROM numbered GROUP BY bidder, session"
    )
}

#[tokio::test]
async fn q11_sessions_per_bidder_equal_a_batch_query() {
    assert_matches_batch(
        include_str!("../benches/nexmark/q11.sql"),
        &sessions_batch(10_000),
        250_000,
    )
    .await;
}

#[tokio::test]
async fn q11_with_a_one_second_gap_splits_sessions_as_a_batch_query_does() {
    // A bidder is active for about 5 s: with a 10 s gap it has one session,
    // with 1 s several.
    let q11 = include_str!("../benches/nexmark/q11.sql")
        .replace("INTERVAL '10' SECOND", "INTERVAL '1' SECOND");
    let (sessions, _) = run(&q11, 250_000).await;
    let bidders: std::collections::HashSet<&str> = sessions
        .iter()
        .map(|row| row.split(',').next().unwrap())
        .collect();
    assert!(bidders.len() < sessions.len(), "no bidder had two sessions");
    assert_matches_batch(&q11, &sessions_batch(1_000), 250_000).await;
}

#[tokio::test]
async fn q12_processing_time_windows_equal_a_batch_query() {
    // Batch k (at k s) holds the events of event time [k - 1, k) s, so the
    // processing-time window ending at 10 s holds event times [0, 10) s.
    assert_matches_batch(
        include_str!("../benches/nexmark/q12.sql"),
        "SELECT bidder, count(*), to_timestamp_millis(t / 10000 * 10000), to_timestamp_millis(t / 10000 * 10000 + 10000)
         FROM bids GROUP BY bidder, t / 10000",
        200_000,
    )
    .await;
}

#[tokio::test]
async fn q7_maximum_from_rust_with_the_generator_as_a_source_equals_the_sql_query() {
    use brooklet::datafusion::functions_aggregate::expr_fn::max;
    use brooklet::engine::source::NexmarkSource;
    use brooklet::engine::source::nexmark::{NexmarkOptions, NexmarkTable};
    use brooklet::prelude::*;

    let events = 250_000;
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    let bids = NexmarkSource::new(NexmarkOptions {
        table: NexmarkTable::Bid,
        events_per_second: RATE,
        events_per_batch: None,
        events: Some(events),
        seed: 3,
    })
    .unwrap();
    ctx.register_source("bid", Arc::new(bids)).unwrap();
    ctx.engine()
        .set_watermark("bid", Watermark::new("date_time", Duration::from_secs(4)))
        .unwrap();
    let window = EventWindow::fixed("date_time", WindowSpec::tumbling(Duration::from_secs(10)));
    let stream = ctx
        .source("bid")
        .unwrap()
        .event_window_aggregate(vec![], vec![max(col("price")).alias("maxprice")], window)
        .unwrap();
    let rows = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&rows);
    let handle = stream
        .foreach_batch(move |_, batch| {
            kept.lock().unwrap().extend(csv_rows(&batch));
            Ok(())
        })
        .unwrap();
    ctx.start().await.unwrap();
    clock.set((events.div_ceil(RATE) as i64 + 1) * 1000);
    handle.await_termination().await.unwrap();
    // The operator's columns: window_start, window_end, maxprice.
    let mut from_rust: Vec<String> = rows
        .lock()
        .unwrap()
        .iter()
        .map(|row| {
            let fields: Vec<&str> = row.split(',').collect();
            format!("{},{},{}", fields[2], fields[0], fields[1])
        })
        .collect();
    from_rust.sort();
    let (from_sql, _) = run(Q7_MAX, events).await;
    assert_eq!(
        from_rust.len(),
        3,
        "25 s of event time: three 10-second windows"
    );
    assert_eq!(from_rust, from_sql);
}

/// `query` checkpointed into `dir` on a manual clock at `millis`: runs
/// batches until `until` (ms) or the end of input, then stops gracefully.
/// What it emitted, by batch time.
async fn checkpointed(
    query: &str,
    dir: &std::path::Path,
    millis: i64,
    until: i64,
) -> Vec<(i64, Vec<String>)> {
    let clock = brooklet::ManualClock::at(millis);
    let setup_clock = clock.clone();
    let ctx = brooklet::StreamingContext::get_or_create(dir, || async move {
        let ctx = brooklet::StreamingContext::builder(Duration::from_secs(1))
            .clock(setup_clock)
            .notices(brooklet::Notices::new(|_| {}))
            .build()?;
        ctx.execute(&ddl(60_000)).await?;
        Ok(ctx)
    })
    .await
    .unwrap();
    let stream = ctx.sql(query).await.unwrap();
    let (handle, outputs) = crate::support::record(stream);
    ctx.start().await.unwrap();
    let mut time = millis;
    while time < until
        && matches!(
            handle.status(),
            brooklet::QueryStatus::Pending | brooklet::QueryStatus::Running
        )
    {
        time += 1000;
        clock.set(time);
        if handle
            .await_batch(brooklet::BatchTime::from_millis(time))
            .await
            .is_none()
        {
            break;
        }
    }
    ctx.stop(brooklet::StopMode::Graceful).await.unwrap();
    let mut outputs = outputs.lock().unwrap().clone();
    for (_, rows) in &mut outputs {
        rows.sort();
    }
    outputs
}

/// Asserts that `query`, stopped after 3 s and resumed from its checkpoint,
/// emits what an uninterrupted run does.
async fn assert_resumes_exactly(query: &str) {
    // Six batches of 10 000 events.
    let whole = tempfile::tempdir().unwrap();
    let uninterrupted = checkpointed(query, whole.path(), 0, 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut resumed = checkpointed(query, dir.path(), 0, 3000).await;
    assert_eq!(resumed.last().map(|(t, _)| *t), Some(3000));
    // Started again at 3 s: the generator goes on from event 30 000 and
    // the windows from their saved state.
    resumed.extend(checkpointed(query, dir.path(), 3000, 20_000).await);
    assert!(uninterrupted.iter().any(|(_, rows)| !rows.is_empty()));
    assert_eq!(resumed, uninterrupted);
}

#[tokio::test]
async fn q5_stopped_and_resumed_from_its_checkpoint_emits_what_an_uninterrupted_run_does() {
    assert_resumes_exactly(include_str!("../benches/nexmark/q5.sql")).await;
}

#[tokio::test]
async fn q7_stopped_and_resumed_from_its_checkpoint_emits_what_an_uninterrupted_run_does() {
    // The open window's bids (array_agg's state) are in the checkpoint.
    assert_resumes_exactly(include_str!("../benches/nexmark/q7.sql")).await;
}

/// `query` as a batch DataFusion query over every event of `events`
/// generated events, in tables named as the streams (`person`, `auction`,
/// `bid`, each with `t`, the event time in ms): sorted CSV lines.
async fn batch_over_all_streams(query: &str, events: u64) -> Vec<String> {
    let session = SessionContext::new();
    for stream in ["person", "auction", "bid"] {
        let (_, batches) = run(
            &format!("SELECT *, CAST(date_time AS BIGINT) AS t FROM {stream}"),
            events,
        )
        .await;
        let table = MemTable::try_new(batches[0].schema(), vec![batches]).unwrap();
        session.register_table(stream, Arc::new(table)).unwrap();
    }
    let result = session.sql(query).await.unwrap().collect().await.unwrap();
    let mut rows: Vec<String> = result.iter().flat_map(csv_rows).collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn q3_running_join_emits_each_match_once_as_a_batch_join() {
    let (streamed, _) = run(include_str!("../benches/nexmark/q3.sql"), 200_000).await;
    let expected = batch_over_all_streams(
        "SELECT P.name, P.city, P.state, A.id FROM auction A JOIN person P ON A.seller = P.id
         WHERE A.category = 10 AND P.state IN ('OR', 'ID', 'CA')",
        200_000,
    )
    .await;
    assert!(expected.len() > 10, "{} matches", expected.len());
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn q8_window_join_equals_a_batch_join_of_each_window() {
    let (streamed, _) = run(include_str!("../benches/nexmark/q8.sql"), 200_000).await;
    let expected = batch_over_all_streams(
        "SELECT P.id, P.name, to_timestamp_millis(P.w)
         FROM (SELECT DISTINCT id, name, t / 10000 * 10000 AS w FROM person) P
         JOIN (SELECT DISTINCT seller, t / 10000 * 10000 AS w FROM auction) A
           ON P.id = A.seller AND P.w = A.w",
        200_000,
    )
    .await;
    assert!(expected.len() > 10, "{} new sellers", expected.len());
    assert_eq!(streamed, expected);
}

/// The bids of an auction while it is open, as a batch join.
const AUCTION_BIDS: &str = "auction A JOIN bid B
    ON A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires";

#[tokio::test]
async fn q20_interval_join_equals_a_batch_join() {
    let (streamed, _) = run(include_str!("../benches/nexmark/q20.sql"), 200_000).await;
    let expected = batch_over_all_streams(
        &format!(
            "SELECT B.auction, B.bidder, B.price, B.channel, B.url, B.date_time, B.extra,
                    A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires,
                    A.seller, A.category, A.extra
             FROM {AUCTION_BIDS} WHERE A.category = 10"
        ),
        200_000,
    )
    .await;
    assert!(expected.len() > 100, "{} bids", expected.len());
    assert_eq!(streamed, expected);
}

#[tokio::test]
async fn q9_winning_bids_last_emitted_per_auction_equal_a_batch_top_1() {
    // EMIT CHANGES: an auction's row comes again when it gets bids; the
    // last one holds its winner (taken from the batches, in order).
    let (streamed, batches) = run(include_str!("../benches/nexmark/q9.sql"), 200_000).await;
    let mut winners = std::collections::BTreeMap::new();
    for row in batches.iter().flat_map(csv_rows) {
        let id = row.split(',').next().unwrap().to_string();
        winners.insert(id, row);
    }
    let mut last: Vec<String> = winners.into_values().collect();
    last.sort();
    assert!(streamed.len() >= last.len());
    let expected = batch_over_all_streams(
        &format!(
            "SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller,
                    category, extra, auction, bidder, price, bid_date_time, bid_extra
             FROM (SELECT A.*, B.auction, B.bidder, B.price, B.date_time AS bid_date_time,
                          B.extra AS bid_extra,
                          row_number() OVER (PARTITION BY A.id ORDER BY B.price DESC, B.date_time ASC) AS rownum
                   FROM {AUCTION_BIDS})
             WHERE rownum = 1"
        ),
        200_000,
    )
    .await;
    assert!(
        expected.len() > 100,
        "{} auctions with bids",
        expected.len()
    );
    assert_eq!(last, expected);
}

#[tokio::test]
async fn q4_average_closing_price_per_category_equals_a_batch_query() {
    // EMIT COMPLETE: the last batch holds every category's current average.
    let (_, batches) = run(include_str!("../benches/nexmark/q4.sql"), 200_000).await;
    let last = batches
        .iter()
        .rev()
        .find(|b| b.num_rows() > 0)
        .expect("q4 emitted rows");
    let mut streamed = csv_rows(last);
    streamed.sort();
    let expected = batch_over_all_streams(
        &format!(
            "SELECT category, avg(final) FROM (
               SELECT max(B.price) AS final, A.category FROM {AUCTION_BIDS} GROUP BY A.id, A.category)
             GROUP BY category"
        ),
        200_000,
    )
    .await;
    let parse = |rows: &[String]| -> Vec<(i64, f64)> {
        rows.iter()
            .map(|r| {
                let (c, v) = r.split_once(',').unwrap();
                (c.parse().unwrap(), v.parse().unwrap())
            })
            .collect()
    };
    let (streamed, expected) = (parse(&streamed), parse(&expected));
    assert_eq!(streamed.len(), 5, "{streamed:?}");
    assert_eq!(streamed.len(), expected.len());
    for ((c1, v1), (c2, v2)) in streamed.iter().zip(&expected) {
        assert_eq!(c1, c2);
        assert!(
            (v1 - v2).abs() <= 1e-6 * v2.abs(),
            "category {c1}: {v1} vs {v2}"
        );
    }
}
