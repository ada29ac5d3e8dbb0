-- Nexmark q12, processing-time windows: bids per bidder in 10-second
-- tumbling windows of processing time (`proctime`, the batch time; Flink's
-- `PROCTIME()`).
SELECT bidder, count(*) AS bid_count, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(proctime), INTERVAL '10' SECOND))
GROUP BY bidder, window_start, window_end;
