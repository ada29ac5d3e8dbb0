//! The `nexmark` source: Nexmark's auction generator (Person, Auction and
//! Bid events), as Arrow batches, without a text round trip.
//!
//! Options `connector = 'nexmark'`, `table = 'bid' | 'auction' | 'person'`:
//! each source is one of the three streams of the same event sequence (as
//! Flink's harness splits one table by `event_type`), so sources declared
//! with the same options see consistent ids. Event `n` (from 0) is a person
//! when `n mod 50 = 0`, an auction when `n mod 50` is 1 to 3, a bid
//! otherwise (Nexmark's 1 : 3 : 46). Its `date_time` is `start + n / rate`
//! (`events.per.second`, default 10 000, as in Nexmark): event time follows
//! the rate whatever the generating speed. Each batch generates
//! `events.per.batch` events (default: the rate times the batch interval,
//! so event time keeps pace with batch time); `events` stops after that
//! many. Every field is a function of `(seed, n)`, so batching never changes
//! the data.
//!
//! Following Nexmark's `GeneratorConfig` defaults: ids from 1000; bids go to
//! one of the 100 newest auctions, half of them to the newest (the hot
//! auction, ratio 2); bidders among the 1000 newest people, three quarters
//! hot (ratio 4); prices log-uniform from 1 to 1 000 000 (cents: 100 to
//! 100 000 000); half the bids on one of four hot channels; categories 10
//! to 14; states from AZ, CA, ID, OR, WA, WY; `extra` pads each event to
//! Nexmark's average sizes (person 200, auction 500, bid 100 bytes).
//! Column names are snake case (`date_time`, `email_address`, …).

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::connector::Options;
use crate::error::{Error, Result};
use crate::metrics::SourceMetrics;
use crate::source::api::{Source, SourceBatch, SourceContext, SourceReader};
use crate::time::BatchTime;

/// Which of the three streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTable {
    /// People (2 % of events).
    Person,
    /// Auctions (6 %).
    Auction,
    /// Bids (92 %).
    Bid,
}

impl NexmarkTable {
    fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "person" | "people" => Ok(NexmarkTable::Person),
            "auction" | "auctions" => Ok(NexmarkTable::Auction),
            "bid" | "bids" => Ok(NexmarkTable::Bid),
            other => Err(Error::Config(format!(
                "unknown nexmark table '{other}'; valid tables: person, auction, bid"
            ))),
        }
    }

    /// The stream's schema.
    pub fn schema(self) -> SchemaRef {
        let time = DataType::Timestamp(TimeUnit::Millisecond, None);
        let f = |name: &str, t: &DataType| Field::new(name, t.clone(), false);
        let (int, text) = (DataType::Int64, DataType::Utf8);
        Arc::new(Schema::new(match self {
            NexmarkTable::Person => vec![
                f("id", &int),
                f("name", &text),
                f("email_address", &text),
                f("credit_card", &text),
                f("city", &text),
                f("state", &text),
                f("date_time", &time),
                f("extra", &text),
            ],
            NexmarkTable::Auction => vec![
                f("id", &int),
                f("item_name", &text),
                f("description", &text),
                f("initial_bid", &int),
                f("reserve", &int),
                f("date_time", &time),
                f("expires", &time),
                f("seller", &int),
                f("category", &int),
                f("extra", &text),
            ],
            NexmarkTable::Bid => vec![
                f("auction", &int),
                f("bidder", &int),
                f("price", &int),
                f("channel", &text),
                f("url", &text),
                f("date_time", &time),
                f("extra", &text),
            ],
        }))
    }
}

const FIRST_ID: i64 = 1000;
const PROPORTION: u64 = 50;
const IN_FLIGHT_AUCTIONS: i64 = 100;
const ACTIVE_PEOPLE: i64 = 1000;
const STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const HOT_URLS: [&str; 4] = [
    "https://www.nexmark.com/google/item.htm?query=1",
    "https://www.nexmark.com/facebook/item.htm?query=1",
    "https://www.nexmark.com/baidu/item.htm?query=1",
    "https://www.nexmark.com/apple/item.htm?query=1",
];

/// Counts of each kind among events `0..n`.
fn kinds_before(n: u64) -> (i64, i64, i64) {
    let (rounds, rest) = (n / PROPORTION, n % PROPORTION);
    let people = rounds + u64::from(rest > 0);
    let auctions = rounds * 3 + rest.saturating_sub(1).min(3);
    let bids = rounds * 46 + rest.saturating_sub(4);
    (people as i64, auctions as i64, bids as i64)
}

/// splitmix64's finalizer: a bijection that spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A random number generator keyed by `(seed, event, draw)`: every field
/// of every event is fixed, however events fall into batches.
#[derive(Clone, Copy)]
struct Draws {
    state: u64,
}

impl Draws {
    fn new(seed: u64, event: u64) -> Self {
        // Both mixed, so that nearby events do not share shifted draws.
        Draws {
            state: mix(seed ^ mix(event)),
        }
    }

    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Appends `len` random lowercase letters to `out` (eight per draw).
    fn letters(&mut self, out: &mut impl Write, len: usize) {
        // Filled 64 letters at a time, so the UTF-8 check is per chunk,
        // not per draw; draws are consumed exactly as eight at a time.
        let mut chunk = [0u8; 64];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len());
            for part in chunk[..n].chunks_mut(8) {
                let bits = self.next().to_le_bytes();
                for (letter, bits) in part.iter_mut().zip(bits) {
                    *letter = b'a' + bits % 26;
                }
            }
            let _ = out.write_str(std::str::from_utf8(&chunk[..n]).expect("letters are ASCII"));
            left -= n;
        }
    }
}

/// The generator's settings.
#[derive(Debug, Clone)]
pub struct NexmarkOptions {
    /// Which stream.
    pub table: NexmarkTable,
    /// Event time per event: `1 / events_per_second`.
    pub events_per_second: u64,
    /// Events generated per batch (`None`: the rate times the interval).
    pub events_per_batch: Option<u64>,
    /// Stop after this many events.
    pub events: Option<u64>,
    /// The seed.
    pub seed: u64,
}

/// Generates one of Nexmark's streams.
#[derive(Debug)]
pub struct NexmarkSource {
    options: NexmarkOptions,
}

impl NexmarkSource {
    /// A generator with `options`.
    pub fn new(options: NexmarkOptions) -> Result<Self> {
        if options.events_per_second == 0 {
            return Err(Error::Config(
                "option 'events.per.second' must be at least 1".into(),
            ));
        }
        Ok(NexmarkSource { options })
    }

    pub(crate) fn from_options(schema: Option<SchemaRef>, options: &mut Options) -> Result<Self> {
        let table = NexmarkTable::parse(&options.take(&["table"]).unwrap_or("bid".into()))?;
        if let Some(declared) = schema
            && declared.fields() != table.schema().fields()
        {
            return Err(Error::Config(format!(
                "a nexmark {table:?} source has the columns {}; declare it without columns",
                crate::error::column_names(&table.schema())
            )));
        }
        NexmarkSource::new(NexmarkOptions {
            table,
            events_per_second: options
                .take_parsed(&["events.per.second"], "a number of events")?
                .unwrap_or(10_000),
            events_per_batch: options.take_parsed(&["events.per.batch"], "a number of events")?,
            events: options.take_parsed(&["events"], "a number of events")?,
            seed: options.take_parsed(&["seed"], "a number")?.unwrap_or(42),
        })
    }
}

impl Source for NexmarkSource {
    fn schema(&self) -> SchemaRef {
        self.options.table.schema()
    }

    fn connector(&self) -> &'static str {
        "nexmark"
    }

    fn describe(&self) -> String {
        format!(
            "Nexmark {:?} stream, {} events/s of event time, seed {}",
            self.options.table, self.options.events_per_second, self.options.seed
        )
    }

    fn open(&self, ctx: SourceContext) -> Result<Box<dyn SourceReader>> {
        let per_batch = self.options.events_per_batch.unwrap_or_else(|| {
            (self.options.events_per_second as u128 * ctx.interval.as_millis() / 1000).max(1) as u64
        });
        Ok(Box::new(NexmarkReader {
            options: self.options.clone(),
            start_millis: ctx.start.millis(),
            per_batch,
            next: 0,
            metrics: ctx.metrics,
            tasks: ctx.decode_tasks,
            ahead: None,
        }))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn available_now(&self) -> std::result::Result<(), String> {
        match self.options.events {
            Some(_) => Ok(()),
            None => Err("it generates events forever; give it events = N".into()),
        }
    }
}

struct NexmarkReader {
    options: NexmarkOptions,
    start_millis: i64,
    per_batch: u64,
    next: u64,
    metrics: Arc<SourceMetrics>,
    /// How many threads may generate (`SET parallelism`): from 2 on, the
    /// next batches are generated on that many threads of their own, two
    /// batches each at most, while the query runs this one.
    tasks: usize,
    /// The thread that generates ahead, once started.
    ahead: Option<Ahead>,
}

/// Threads that generate the ranges of events they are sent, for the whole
/// life of a reader: one per task, each making whole batches (batch `k` of
/// those asked for on thread `k mod n`), so that `n` batches are made at
/// once while the query runs the batch before them. Each thread has up to
/// two batches asked of it: one it makes while its last one waits to be
/// taken, so that a thread is not idle while the query catches up. Threads live as long
/// as the reader, not one per batch, so that their allocators' memory is
/// reused rather than faulted in every batch. They end when the reader
/// drops their senders.
struct Ahead {
    threads: Vec<AheadThread>,
    /// The ranges asked for, oldest first, with the thread making each.
    pending: std::collections::VecDeque<((u64, u64), usize)>,
    /// The thread the next range goes to.
    next_thread: usize,
}

/// One generating thread's channels.
struct AheadThread {
    ranges: std::sync::mpsc::Sender<(u64, u64)>,
    batches: std::sync::mpsc::Receiver<Result<RecordBatch>>,
}

impl Ahead {
    /// Starts `threads` threads, generating with `generator`'s settings.
    fn start(generator: &NexmarkReader, threads: usize) -> Ahead {
        let threads = (0..threads)
            .map(|_| {
                let generator = generator.clone_settings();
                let (ranges, asked) = std::sync::mpsc::channel::<(u64, u64)>();
                let (made, batches) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    for (from, to) in asked {
                        if made.send(generator.batch(from, to)).is_err() {
                            return;
                        }
                    }
                });
                AheadThread { ranges, batches }
            })
            .collect();
        Ahead {
            threads,
            pending: std::collections::VecDeque::new(),
            next_thread: 0,
        }
    }

    /// What was generated of `range`, when that is the oldest range asked
    /// for; otherwise everything asked for is waited for and dropped.
    fn take(&mut self, range: (u64, u64)) -> Option<Result<RecordBatch>> {
        let (oldest, thread) = self.pending.pop_front()?;
        let made = self.threads[thread].batches.recv().ok();
        if oldest == range {
            return made;
        }
        for (_, thread) in std::mem::take(&mut self.pending) {
            let _ = self.threads[thread].batches.recv();
        }
        None
    }

    /// The end of the newest range asked for, if any is pending.
    fn asked_through(&self) -> Option<u64> {
        self.pending.back().map(|((_, to), _)| *to)
    }

    /// Whether two ranges per thread are pending.
    fn is_full(&self) -> bool {
        self.pending.len() >= 2 * self.threads.len()
    }

    /// Asks the next thread for `range`.
    fn ask(&mut self, range: (u64, u64)) {
        let thread = self.next_thread;
        self.next_thread = (thread + 1) % self.threads.len();
        if self.threads[thread].ranges.send(range).is_ok() {
            self.pending.push_back((range, thread));
        }
    }
}

/// Columns being filled: texts are written straight into Arrow builders,
/// with no allocation per value.
struct Columns {
    ints: Vec<Vec<i64>>,
    texts: Vec<StringBuilder>,
    times: Vec<Vec<i64>>,
}

impl Columns {
    /// Ends the value written into text column `i`.
    fn end(&mut self, i: usize) {
        self.texts[i].append_value("");
    }

    /// Appends `value` to text column `i`.
    fn text(&mut self, i: usize, value: &str) {
        self.texts[i].append_value(value);
    }
}

impl NexmarkReader {
    fn time_of(&self, n: u64) -> i64 {
        self.start_millis + (n as u128 * 1000 / self.options.events_per_second as u128) as i64
    }

    /// Pads an event whose other fields take about `used` bytes to `size`,
    /// as text column `i`.
    fn extra(draws: &mut Draws, c: &mut Columns, i: usize, used: usize, size: usize) {
        draws.letters(&mut c.texts[i], size.saturating_sub(used));
        c.end(i);
    }

    fn person(&self, n: u64, c: &mut Columns) {
        let mut d = Draws::new(self.options.seed, n);
        let (people, _, _) = kinds_before(n);
        c.ints[0].push(FIRST_ID + people);
        let first = FIRST_NAMES[d.below(11) as usize];
        let last = LAST_NAMES[d.below(9) as usize];
        let _ = write!(c.texts[0], "{first} {last}");
        c.end(0);
        d.letters(&mut c.texts[1], 7);
        let _ = c.texts[1].write_str("@");
        d.letters(&mut c.texts[1], 5);
        let _ = c.texts[1].write_str(".com");
        c.end(1);
        let _ = write!(
            c.texts[2],
            "{:04} {:04} {:04} {:04}",
            d.below(10_000),
            d.below(10_000),
            d.below(10_000),
            d.below(10_000)
        );
        c.end(2);
        let city = CITIES[d.below(10) as usize];
        let state = STATES[d.below(6) as usize];
        c.text(3, city);
        c.text(4, state);
        // name, email (17), card (19), city, state
        let used = first.len() + 1 + last.len() + 17 + 19 + city.len() + state.len() + 16;
        Self::extra(&mut d, c, 5, used, 200);
        c.times[0].push(self.time_of(n));
    }

    fn auction(&self, n: u64, c: &mut Columns) {
        let mut d = Draws::new(self.options.seed, n);
        let (people, auctions, _) = kinds_before(n);
        let id = FIRST_ID + auctions;
        // Sellers: the newest person three times in four, otherwise anybody
        // recent (hot sellers ratio 4).
        let newest_person = FIRST_ID + (people - 1).max(0);
        let seller = if d.below(4) > 0 {
            newest_person
        } else {
            newest_person - d.below(ACTIVE_PEOPLE.min(people).max(1) as u64) as i64
        };
        let initial = (10f64.powf(d.unit() * 6.0) * 100.0).round() as i64;
        let reserve = initial + (10f64.powf(d.unit() * 6.0) * 100.0).round() as i64;
        let time = self.time_of(n);
        let expires = time + 1 + d.below(10_000) as i64;
        d.letters(&mut c.texts[0], 20);
        c.end(0);
        d.letters(&mut c.texts[1], 100);
        c.end(1);
        let category = 10 + d.below(5) as i64;
        Self::extra(&mut d, c, 2, 20 + 100 + 56, 500);
        for (i, v) in [id, initial, reserve, seller, category]
            .into_iter()
            .enumerate()
        {
            c.ints[i].push(v);
        }
        c.times[0].push(time);
        c.times[1].push(expires);
    }

    fn bid(&self, n: u64, c: &mut Columns) {
        let mut d = Draws::new(self.options.seed, n);
        let (people, auctions, _) = kinds_before(n);
        let newest_auction = FIRST_ID + (auctions - 1).max(0);
        // Hot auction ratio 2: half the bids go to the newest auction.
        let auction = if d.below(2) == 0 {
            newest_auction
        } else {
            newest_auction - d.below(IN_FLIGHT_AUCTIONS.min(auctions).max(1) as u64) as i64
        };
        let newest_person = FIRST_ID + (people - 1).max(0);
        // Hot bidders ratio 4: three quarters from the newest people.
        let bidder = if d.below(4) > 0 {
            newest_person - d.below(4.min(people).max(1) as u64) as i64
        } else {
            newest_person - d.below(ACTIVE_PEOPLE.min(people).max(1) as u64) as i64
        };
        let price = (10f64.powf(d.unit() * 6.0) * 100.0).round() as i64;
        let used = if d.below(2) == 0 {
            let hot = d.below(4) as usize;
            c.text(0, HOT_CHANNELS[hot]);
            c.text(1, HOT_URLS[hot]);
            HOT_CHANNELS[hot].len() + HOT_URLS[hot].len()
        } else {
            let k = d.below(10_000);
            let before = (
                c.texts[0].values_slice().len(),
                c.texts[1].values_slice().len(),
            );
            let _ = write!(c.texts[0], "channel-{k}");
            c.end(0);
            let _ = write!(c.texts[1], "https://www.nexmark.com/");
            d.letters(&mut c.texts[1], 5);
            let _ = write!(c.texts[1], "/");
            d.letters(&mut c.texts[1], 5);
            let _ = write!(c.texts[1], "/item.htm?query=1&channel_id={k}");
            c.end(1);
            c.texts[0].values_slice().len() - before.0 + c.texts[1].values_slice().len() - before.1
        };
        Self::extra(&mut d, c, 2, used + 32, 100);
        for (i, v) in [auction, bidder, price].into_iter().enumerate() {
            c.ints[i].push(v);
        }
        c.times[0].push(self.time_of(n));
    }

    /// Events `from..to`: generated ahead when they are the oldest range
    /// the generating threads were asked for, else here. With two tasks or
    /// more, then asks those threads for the batches after them, one per
    /// thread, up to `last`. Every event is a function of its index, so
    /// where it is made changes nothing; a restore that moves `next` just
    /// misses what was made ahead.
    fn batch_ahead(&mut self, from: u64, to: u64, last: Option<u64>) -> Result<RecordBatch> {
        let batch = match self.ahead.as_mut().and_then(|a| a.take((from, to))) {
            Some(made) => made?,
            None => self.batch(from, to)?,
        };
        if self.tasks > 1 {
            let ahead = match self.ahead.as_mut() {
                Some(ahead) => ahead,
                None => self.ahead.insert(Ahead::start(self, self.tasks)),
            };
            let mut from = ahead.asked_through().unwrap_or(to);
            while !ahead.is_full() {
                let after = last.map_or(from + self.per_batch, |last| {
                    (from + self.per_batch).min(last)
                });
                if after <= from {
                    break;
                }
                ahead.ask((from, after));
                from = after;
            }
        }
        Ok(batch)
    }

    /// The reader's settings, without what it generates ahead.
    fn clone_settings(&self) -> NexmarkReader {
        NexmarkReader {
            options: self.options.clone(),
            start_millis: self.start_millis,
            per_batch: self.per_batch,
            next: self.next,
            metrics: Arc::clone(&self.metrics),
            tasks: self.tasks,
            ahead: None,
        }
    }

    fn batch(&self, from: u64, to: u64) -> Result<RecordBatch> {
        let table = self.options.table;
        let (ints, texts, times) = match table {
            NexmarkTable::Person => (1, 6, 1),
            NexmarkTable::Auction => (5, 3, 2),
            NexmarkTable::Bid => (3, 3, 1),
        };
        let (before, upto) = (kinds_before(from), kinds_before(to));
        let rows = match table {
            NexmarkTable::Person => upto.0 - before.0,
            NexmarkTable::Auction => upto.1 - before.1,
            NexmarkTable::Bid => upto.2 - before.2,
        } as usize;
        let mut c = Columns {
            ints: (0..ints).map(|_| Vec::with_capacity(rows)).collect(),
            texts: (0..texts)
                .map(|_| StringBuilder::with_capacity(rows, rows * 64))
                .collect(),
            times: (0..times).map(|_| Vec::with_capacity(rows)).collect(),
        };
        for n in from..to {
            match (n % PROPORTION, table) {
                (0, NexmarkTable::Person) => self.person(n, &mut c),
                (1..=3, NexmarkTable::Auction) => self.auction(n, &mut c),
                (4.., NexmarkTable::Bid) => self.bid(n, &mut c),
                _ => {}
            }
        }
        let int = |v: &mut Vec<Vec<i64>>, i: usize| -> ArrayRef {
            Arc::new(Int64Array::from(std::mem::take(&mut v[i])))
        };
        let text = |v: &mut Vec<StringBuilder>, i: usize| -> ArrayRef { Arc::new(v[i].finish()) };
        let time = |v: &mut Vec<Vec<i64>>, i: usize| -> ArrayRef {
            Arc::new(TimestampMillisecondArray::from(std::mem::take(&mut v[i])))
        };
        let columns: Vec<ArrayRef> = match table {
            NexmarkTable::Person => {
                let mut cols = vec![int(&mut c.ints, 0)];
                cols.extend((0..5).map(|i| text(&mut c.texts, i)));
                cols.push(time(&mut c.times, 0));
                cols.push(text(&mut c.texts, 5));
                cols
            }
            NexmarkTable::Auction => vec![
                int(&mut c.ints, 0),
                text(&mut c.texts, 0),
                text(&mut c.texts, 1),
                int(&mut c.ints, 1),
                int(&mut c.ints, 2),
                time(&mut c.times, 0),
                time(&mut c.times, 1),
                int(&mut c.ints, 3),
                int(&mut c.ints, 4),
                text(&mut c.texts, 2),
            ],
            NexmarkTable::Bid => vec![
                int(&mut c.ints, 0),
                int(&mut c.ints, 1),
                int(&mut c.ints, 2),
                text(&mut c.texts, 0),
                text(&mut c.texts, 1),
                time(&mut c.times, 0),
                text(&mut c.texts, 2),
            ],
        };
        Ok(RecordBatch::try_new(table.schema(), columns)?)
    }
}

impl SourceReader for NexmarkReader {
    fn next_batch(&mut self, _time: BatchTime) -> Result<SourceBatch> {
        let mut to = self.next + self.per_batch;
        if let Some(limit) = self.options.events {
            to = to.min(limit);
        }
        let from = self.next.min(to);
        let batch = self.batch_ahead(from, to, self.options.events)?;
        self.next = to;
        self.metrics.add_records(batch.num_rows() as u64);
        Ok(SourceBatch {
            batch,
            end_of_input: self.options.events.is_some_and(|limit| self.next >= limit),
        })
    }

    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "next": self.next, "start": self.start_millis }))
    }

    fn load(&mut self, position: &serde_json::Value) -> Result<()> {
        if let (Some(next), Some(start)) = (position["next"].as_u64(), position["start"].as_i64()) {
            self.next = next;
            self.start_millis = start;
        }
        Ok(())
    }
}

/// How long `events` take in event time at `events_per_second`.
pub fn event_time_span(events: u64, events_per_second: u64) -> Duration {
    Duration::from_millis((events as u128 * 1000 / events_per_second.max(1) as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportions_follow_nexmark() {
        assert_eq!(kinds_before(0), (0, 0, 0));
        assert_eq!(kinds_before(1), (1, 0, 0));
        assert_eq!(kinds_before(4), (1, 3, 0));
        assert_eq!(kinds_before(50), (1, 3, 46));
        assert_eq!(kinds_before(100_000), (2_000, 6_000, 92_000));
    }

    #[test]
    fn events_are_padded_to_nexmark_average_sizes() {
        for (table, size) in [
            (NexmarkTable::Person, 200),
            (NexmarkTable::Auction, 500),
            (NexmarkTable::Bid, 100),
        ] {
            let reader = NexmarkReader {
                options: NexmarkOptions {
                    table,
                    events_per_second: 10_000,
                    events_per_batch: None,
                    events: None,
                    seed: 1,
                },
                start_millis: 0,
                per_batch: 50_000,
                next: 0,
                metrics: Arc::default(),
                tasks: 1,
                ahead: None,
            };
            let batch = reader.batch(0, 50_000).unwrap();
            // Text bytes, and 8 bytes per number or time.
            let bytes: usize = batch
                .columns()
                .iter()
                .map(
                    |c| match c.as_any().downcast_ref::<arrow::array::StringArray>() {
                        Some(text) => text.value_data().len(),
                        None => 8 * c.len(),
                    },
                )
                .sum();
            let average = bytes / batch.num_rows();
            assert!(
                average.abs_diff(size) <= size / 10,
                "{table:?}: {average} bytes on average, Nexmark's is {size}"
            );
        }
    }

    #[test]
    fn batches_do_not_change_the_data() {
        let reader = |per_batch| NexmarkReader {
            options: NexmarkOptions {
                table: NexmarkTable::Bid,
                events_per_second: 10_000,
                events_per_batch: Some(per_batch),
                events: None,
                seed: 7,
            },
            start_millis: 0,
            per_batch,
            next: 0,
            metrics: Arc::default(),
            tasks: 1,
            ahead: None,
        };
        let whole = reader(1000).batch(0, 1000).unwrap();
        // Made ahead on 2 or 3 threads, batch after batch: the same rows.
        for tasks in [2, 3] {
            let mut ahead = NexmarkReader {
                tasks,
                ..reader(100)
            };
            let made: Vec<RecordBatch> = (0..10)
                .map(|i| {
                    ahead
                        .batch_ahead(i * 100, (i + 1) * 100, Some(1000))
                        .unwrap()
                })
                .collect();
            assert!(
                ahead.ahead.as_ref().is_some_and(|a| a.pending.is_empty()),
                "nothing asked past the last event"
            );
            assert_eq!(
                arrow::compute::concat_batches(&whole.schema(), &made).unwrap(),
                whole
            );
            // A restore moves the position back: what was made ahead is
            // dropped, and the rows are still those of their indices.
            let mut moved = NexmarkReader {
                tasks,
                ..reader(100)
            };
            moved.batch_ahead(0, 100, Some(1000)).unwrap();
            moved.batch_ahead(100, 200, Some(1000)).unwrap();
            let again = moved.batch_ahead(0, 100, Some(1000)).unwrap();
            assert_eq!(again, made[0]);
            let next = moved.batch_ahead(100, 200, Some(1000)).unwrap();
            assert_eq!(next, made[1]);
        }
        let mut small = reader(7);
        let mut parts = Vec::new();
        while small.next < 1000 {
            let to = (small.next + 7).min(1000);
            parts.push(small.batch(small.next, to).unwrap());
            small.next = to;
        }
        let joined = arrow::compute::concat_batches(&whole.schema(), &parts).unwrap();
        assert_eq!(joined, whole);
        assert_eq!(whole.num_rows(), 920);
        // Event time: event n at n / rate seconds.
        let times = whole
            .column_by_name("date_time")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(times.value(0), 0);
        assert_eq!(times.value(times.len() - 1), 99);
    }
}
