-- Nexmark's hot items (q5) on the built-in auction generator: every 2
-- seconds of event time, the auctions with the most bids in the last 10
-- seconds. 10 000 events per second of event time, generated each batch;
-- a window closes once the watermark (4 s behind) passes its end, so the
-- first rows come after about 6 seconds. Ctrl-C stops it.
SET batch.interval = '1 second';

CREATE SOURCE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', table = 'bid', events.per.second = 10000);

WITH auction_bids AS (
  SELECT auction, count(*) AS num, window_start, window_end
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
)
SELECT a.window_end, a.auction, a.num
FROM auction_bids AS a
JOIN (SELECT window_end, max(num) AS most FROM auction_bids GROUP BY window_end) AS m
  ON a.window_end = m.window_end AND a.num = m.most;
