-- Nexmark q11, user sessions: bids per bidder per session, a session ending
-- after 10 seconds (event time) without a bid.
SELECT bidder, bid_count,
       s['start'] AS starttime, s['end'] AS endtime
FROM (
  SELECT bidder, session(date_time, INTERVAL '10' SECOND) AS s, count(*) AS bid_count
  FROM bid
  GROUP BY bidder, session(date_time, INTERVAL '10' SECOND)
);
