-- Nexmark q20, expand bid with auction: every bid of an auction of
-- category 10 with the auction's columns. Flink joins them with a regular
-- join, whose state keeps every bid and auction; here the join also says
-- what the generator guarantees, that a bid falls in its auction's
-- lifetime, so it is an interval join on event time and its state is
-- bounded by the watermarks (bids outside their auction's lifetime are
-- not expanded).
SELECT auction, bidder, price, channel, url, B.date_time, B.extra,
       item_name, description, initial_bid, reserve, A.date_time, expires, seller, category, A.extra
FROM bid AS B INNER JOIN auction AS A
  ON B.auction = A.id AND B.date_time BETWEEN A.date_time AND A.expires
WHERE A.category = 10;
