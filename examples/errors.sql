-- The seed's first example (Learning Spark, section 10.1): the lines of a
-- socket that contain "error", printed every second.
-- Start a server first:  nc -lk 7777
SET batch.interval = '1 second';
CREATE SOURCE lines (line TEXT)
  WITH (connector = 'socket', hostname = '127.0.0.1', port = 7777, format = 'lines');
SELECT line FROM lines WHERE line LIKE '%error%';
