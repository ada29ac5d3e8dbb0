-- Nexmark q5, hot items: the auctions with the most bids in each 10-second
-- window sliding every 2 seconds (event time), joined with the largest
-- count of their window. The window is one operator (a CTE read twice);
-- the join and the maximum run per batch on the rows a closing window
-- emits, which all arrive in the same batch. Nexmark's text, with the
-- window written out twice, also runs (as two identical windows).
WITH auction_bids AS (
  SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
  FROM TABLE(HOP(TABLE bid, DESCRIPTOR(date_time), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
  GROUP BY auction, window_start, window_end
)
SELECT a.auction, a.num, a.starttime, a.endtime
FROM auction_bids AS a
JOIN (
  SELECT max(num) AS maxn, starttime, endtime
  FROM auction_bids
  GROUP BY starttime, endtime
) AS m
ON a.starttime = m.starttime AND a.endtime = m.endtime AND a.num >= m.maxn;
