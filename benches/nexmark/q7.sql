-- Nexmark q7, highest bid: the highest price in each 10-second tumbling
-- window (event time). This is the aggregate part of q7: Nexmark's q7 then
-- joins the maximum back to the window's bids, an interval join between a
-- stream and a window's output, which Brooklet does not have yet.
SELECT max(price) AS maxprice, window_start, window_end
FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '10' SECOND))
GROUP BY window_start, window_end;
