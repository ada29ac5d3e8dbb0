-- Nexmark q0, pass-through: every bid, projected. Measures the cost of
-- reading a batch, running a plan on it, and handing the result to a sink.
SELECT auction, bidder, price, date_time, extra FROM bid;
