-- Nexmark q4, average price per category: the closing price of an auction
-- is its highest bid while it is open (an interval join on event time:
-- bids between the auction's start and its expiry, kept only while they
-- can still match), then the average of those per category. EMIT COMPLETE:
-- the closing prices are a running aggregate over all auctions, and every
-- batch the average per category is computed over all of them (Spark's
-- complete mode; Flink's updating aggregate).
SELECT Q.category, avg(Q.final) AS avg_final
FROM (
  SELECT max(B.price) AS final, A.category
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.category
) Q
GROUP BY Q.category
EMIT COMPLETE;
