//! Bursts and bad networks, through real sockets on 127.0.0.1:
//! `max.records.per.batch` caps a batch, and what is over waits for the
//! next batches (bounded: the receiver's channel pushes back on the
//! sender); a server that drops and refuses connections is reconnected.

use std::io::Write;
use std::time::Duration;

use crate::support::{manual_context, record, wait_for_batch, wait_for_records};

#[tokio::test]
async fn a_burst_is_cut_into_batches_of_at_most_max_records() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut peer, _) = listener.accept().unwrap();
        let burst: String = (0..2500).map(|i| format!("{i}\n")).collect();
        peer.write_all(burst.as_bytes()).unwrap();
        // Keep the connection open while the batches run.
        let _ = finished.recv_timeout(Duration::from_secs(30));
    });
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE numbers (n BIGINT) WITH (connector = 'socket', host = '127.0.0.1', \
         port = {port}, format = 'csv', max.records.per.batch = 1000)"
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(
        ctx.sql("SELECT count(*) AS c, min(n) AS lo, max(n) AS hi FROM numbers")
            .await
            .unwrap(),
    );
    ctx.start().await.unwrap();
    // Batch 1 opens the socket; then wait for the whole burst to arrive.
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    wait_for_records(&ctx, "numbers", 2500).await;
    for batch in 2..=5 {
        clock.set(batch * 1000);
        wait_for_batch(&handle, batch * 1000).await;
    }
    let outputs = outputs.lock().unwrap().clone();
    let counts: Vec<String> = outputs.iter().map(|(_, rows)| rows.join("|")).collect();
    // Batch 1 may have taken the first rows already; from then on, at most
    // 1000 per batch, in order, nothing lost.
    let taken: Vec<(u64, Option<(u64, u64)>)> = outputs
        .iter()
        .map(|(_, rows)| {
            let fields: Vec<&str> = rows[0].split(',').collect();
            let count = fields[0].parse().unwrap();
            let range =
                (count > 0).then(|| (fields[1].parse().unwrap(), fields[2].parse().unwrap()));
            (count, range)
        })
        .collect();
    assert!(taken.iter().all(|(c, _)| *c <= 1000), "{counts:?}");
    assert_eq!(
        taken.iter().map(|(c, _)| c).sum::<u64>(),
        2500,
        "{counts:?}"
    );
    let mut next = 0;
    for (count, range) in &taken {
        if let Some((lo, hi)) = range {
            assert_eq!((*lo, *hi), (next, next + count - 1), "{counts:?}");
            next += count;
        }
    }
    drop(ctx);
    done.send(()).unwrap();
    server.join().unwrap();
}

/// A server that drops the connection five times (once in the middle of a
/// line) and refuses connections for 2 s once: the query keeps running,
/// the source reconnects five times, the cut line is counted (never merged
/// with the next one), and every whole line arrives once.
#[tokio::test]
async fn a_flaky_server_is_reconnected_and_the_cut_line_counted() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let mut listener = Some(listener);
        let sends: [&[u8]; 6] = [b"1\n2\n", b"3\n4", b"5\n", b"6\n", b"7\n", b"8\n9\n"];
        for (i, bytes) in sends.iter().enumerate() {
            if i == 3 {
                // Refuse connections for 2 s: nobody listens.
                drop(listener.take());
                std::thread::sleep(Duration::from_secs(2));
                listener = Some(std::net::TcpListener::bind(address).unwrap());
            }
            let (mut peer, _) = listener.as_ref().unwrap().accept().unwrap();
            peer.write_all(bytes).unwrap();
            if i == sends.len() - 1 {
                let _ = finished.recv_timeout(Duration::from_secs(30));
            }
            // Dropping `peer` closes the connection.
        }
    });
    let (ctx, clock) = manual_context(0, Duration::from_secs(1));
    ctx.execute(&format!(
        "CREATE SOURCE numbers (n BIGINT) WITH (connector = 'socket', host = '127.0.0.1', \
         port = {}, format = 'csv', reconnect.backoff.max = '300 ms')",
        address.port()
    ))
    .await
    .unwrap();
    let (handle, outputs) = record(ctx.sql("SELECT n FROM numbers").await.unwrap());
    ctx.start().await.unwrap();
    // Batch 1 opens the socket; the drops, refusals and reconnects happen
    // in real time; then batch 2 takes every whole line.
    clock.set(1000);
    wait_for_batch(&handle, 1000).await;
    wait_for_records(&ctx, "numbers", 8).await;
    clock.set(2000);
    wait_for_batch(&handle, 2000).await;
    let rows = || -> Vec<String> {
        outputs
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, rows)| rows.clone())
            .collect()
    };
    assert_eq!(rows(), ["1", "2", "3", "5", "6", "7", "8", "9"]);
    let metrics = ctx.engine().sources()[0].metrics.clone();
    assert_eq!((metrics.reconnects, metrics.cut_lines), (5, 1));
    assert!(!handle.status().is_terminal(), "the query keeps running");
    done.send(()).unwrap();
    ctx.stop(brooklet::StopMode::Immediate).await.unwrap();
    server.join().unwrap();
}
