-- Brooklet's first-minute demo: a built-in generator and a sliding window.
-- Every second, the last 5 seconds of rows, counted per bucket; the first
-- windows after the start are partial, as in Spark Streaming. Ctrl-C stops it.
SET batch.interval = '1 second';

-- 5 rows per second of (id BIGINT, ts TIMESTAMP).
CREATE SOURCE seq WITH (connector = 'sequence', rows.per.second = 5);

SELECT hop(INTERVAL '1' SECOND, INTERVAL '5' SECOND)['end'] AS window_end,
       id % 3 AS bucket, count(*) AS n, min(id) AS first_id, max(id) AS last_id
FROM seq
GROUP BY hop(INTERVAL '1' SECOND, INTERVAL '5' SECOND), id % 3
ORDER BY bucket;
