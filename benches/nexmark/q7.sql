-- Nexmark q7, highest bid: the bids with the highest price of each
-- 10-second tumbling window (event time). Nexmark's SQL joins the window's
-- maximum back to the bid stream with an interval condition; here the
-- window keeps its bids (array_agg, as Flink's join keeps them) beside the
-- maximum, and the rows are unnested when it closes. The one difference:
-- Flink's BETWEEN also matches a bid at exactly the window's end, which
-- belongs to the next window.
SELECT bid['auction'] AS auction, bid['price'] AS price, bid['bidder'] AS bidder,
       bid['date_time'] AS date_time, bid['extra'] AS extra
FROM (
  SELECT unnest(bids) AS bid, maxprice
  FROM (
    SELECT max(price) AS maxprice,
           array_agg(named_struct('auction', auction, 'price', price, 'bidder', bidder,
                                  'date_time', date_time, 'extra', extra)) AS bids
    FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
    GROUP BY window_start, window_end
  )
)
WHERE bid['price'] = maxprice;
