-- Nexmark q9, winning bids: for each auction, its highest bid while it is
-- open (the earliest of equal ones). Nexmark ranks the bids of the
-- interval join with ROW_NUMBER and keeps the first; here the join's
-- matches feed a running aggregate whose maximum of (price, -time, …) is
-- the winner so far, emitted whenever an auction gets bids (EMIT CHANGES,
-- as Flink's updating Top-1). Bids are kept only while an auction they
-- could belong to can still arrive; auctions until they expire.
SELECT id, item_name, description, initial_bid, reserve, date_time, expires, seller,
       category, extra, id AS auction, w['bidder'] AS bidder, w['price'] AS price,
       to_timestamp_millis(-w['neg_time']) AS bid_date_time, w['extra'] AS bid_extra
FROM (
  SELECT A.id, A.item_name, A.description, A.initial_bid, A.reserve, A.date_time, A.expires,
         A.seller, A.category, A.extra,
         max(named_struct('price', B.price, 'neg_time', -CAST(B.date_time AS BIGINT),
                          'bidder', B.bidder, 'extra', B.extra)) AS w
  FROM auction A, bid B
  WHERE A.id = B.auction AND B.date_time BETWEEN A.date_time AND A.expires
  GROUP BY A.id, A.item_name, A.description, A.initial_bid, A.reserve, A.date_time,
           A.expires, A.seller, A.category, A.extra
)
EMIT CHANGES;
