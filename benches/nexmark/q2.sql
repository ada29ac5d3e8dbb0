-- Nexmark q2, selection: the bids on a few auctions (`MOD(auction, 123) = 0`
-- in Nexmark's SQL; DataFusion spells it `%`).
SELECT auction, price FROM bid WHERE auction % 123 = 0;
