-- Event time: bids carry their own timestamps and may arrive up to 2 s out
-- of order. Each 10-second window of each auction is printed once, complete,
-- when the watermark (largest ts seen - 2 s) passes its end; at end of input
-- the open windows are printed and the run ends.
--
--   cargo run -p brooklet-cli -- run examples/bids.sql < examples/bids.csv
SET batch.interval = '200 ms';

CREATE SOURCE bids (auction BIGINT, bidder BIGINT, price BIGINT, ts TIMESTAMP NOT NULL,
                    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
  WITH (connector = 'stdin', format = 'csv');

SELECT window_start, window_end, auction, count(*) AS bids, max(price) AS top
FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY window_start, window_end, auction;
