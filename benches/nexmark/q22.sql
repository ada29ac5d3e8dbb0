-- Nexmark q22, url directories: the first three path segments of a bid's
-- url (Flink's SPLIT_INDEX(url, '/', 3..5) counts from 0; DataFusion's
-- split_part counts from 1).
SELECT auction, bidder, price, channel,
       split_part(url, '/', 4) AS dir1,
       split_part(url, '/', 5) AS dir2,
       split_part(url, '/', 6) AS dir3
FROM bid;
