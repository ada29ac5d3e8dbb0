-- Brooklet's first-minute demo: a built-in generator, a continuous query,
-- one printed block per batch. Stop it with Ctrl-C.
SET batch.interval = '1 second';

-- 5 rows per second of (id BIGINT, ts TIMESTAMP).
CREATE SOURCE seq WITH (connector = 'sequence', rows.per.second = 5);

-- Runs on every batch: each batch holds the rows generated in its second.
SELECT id, ts, id % 3 AS bucket, CASE WHEN id % 2 = 0 THEN 'even' ELSE 'odd' END AS parity
FROM seq;
