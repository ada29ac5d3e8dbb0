-- Nexmark's three streams, as Flink's harness declares them (ddl_gen.sql):
-- one generated event sequence split into people, auctions and bids, event
-- time following the rate, watermarks 4 seconds behind. The harness
-- (`cargo bench --bench nexmark`) and the correctness tests fill in
-- ${EVENTS_PER_SECOND} (of event time), ${EVENTS} and ${SEED}.
SET batch.interval = '1 second';

CREATE SOURCE person (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', table = 'person', events.per.second = ${EVENTS_PER_SECOND},
        events = ${EVENTS}, seed = ${SEED});

CREATE SOURCE auction (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', table = 'auction', events.per.second = ${EVENTS_PER_SECOND},
        events = ${EVENTS}, seed = ${SEED});

CREATE SOURCE bid (WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
  WITH (connector = 'nexmark', table = 'bid', events.per.second = ${EVENTS_PER_SECOND},
        events = ${EVENTS}, seed = ${SEED});
