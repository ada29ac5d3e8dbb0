-- Brooklet side of the word-count comparison (benches/spark/compare.sh):
-- split each line into words on spaces, count per word over a 10 s window
-- sliding every 1 s, with 1 s batches. compare.sh copies this file with
-- the port replaced (sed on "port = 9999"); by hand:
--   python3 benches/spark/linegen.py --port 9999 --rate 50000 --duration 40 &
--   target/release/brooklet run benches/spark/wordcount.sql --progress > /dev/null
SET batch.interval = '1 second';
CREATE SOURCE lines (line TEXT)
  WITH (connector = 'socket', hostname = '127.0.0.1', port = 9999, format = 'lines');
SELECT word, count(*) AS n
FROM (SELECT unnest(string_to_array(line, ' ')) AS word FROM lines) AS words
GROUP BY hop(INTERVAL '1' SECOND, INTERVAL '10' SECOND), word;
