//! Reads a partition the way a `read_committed` consumer of real Kafka
//! sees it, from the record batches themselves: this broker lists no
//! aborted transactions in its Fetch responses, so a client's
//! `read_committed` shows aborted records (`../shared/notes/kafka-local.md`,
//! "Correction"). Here a raw Fetch (v4) reads every batch from offset 0,
//! and the transaction markers decide: plain records are kept; a
//! transactional batch's records are kept when their producer's COMMIT
//! marker follows, dropped at an ABORT; a transaction still open at the
//! end is reported, and hides what follows it, as Kafka's last stable
//! offset does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;

/// A record's key and value.
pub type Record = (Option<Vec<u8>>, Vec<u8>);

/// What a `read_committed` consumer sees of a partition.
#[derive(Debug, Default)]
pub struct Committed {
    /// The committed records' (key, value), in offset order.
    pub records: Vec<Record>,
    /// Records of aborted transactions that a broker with this fault
    /// shows.
    pub aborted: usize,
    /// Producers whose transaction is still open at the end.
    pub open: Vec<i64>,
}

/// Reads partition `partition` of `topic` from the broker at
/// `127.0.0.1:port`.
pub fn read(port: u16, topic: &str, partition: i32) -> Committed {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the broker accepts");
    let mut batches = Vec::new();
    let mut offset = 0i64;
    loop {
        let (high, records) = fetch(&mut stream, topic, partition, offset);
        let before = batches.len();
        parse_batches(&records, &mut batches);
        let Some(last) = batches.last() else {
            break;
        };
        let next = last.base_offset + i64::from(last.last_offset_delta) + 1;
        if batches.len() == before || next >= high {
            break;
        }
        offset = next;
    }
    resolve(batches)
}

struct Batch {
    base_offset: i64,
    last_offset_delta: i32,
    transactional: bool,
    control: bool,
    producer_id: i64,
    records: Vec<Record>,
}

fn resolve(batches: Vec<Batch>) -> Committed {
    let mut committed = Committed::default();
    // Open transactions: producer id → its records so far, and the index in
    // `records` where its first record would go (the last stable offset).
    let mut open: BTreeMap<i64, Vec<Record>> = BTreeMap::new();
    for batch in batches {
        if batch.control {
            let kind = batch.records.first().and_then(|(key, _)| {
                let key = key.as_ref()?;
                (key.len() >= 4).then(|| i16::from_be_bytes([key[2], key[3]]))
            });
            let pending = open.remove(&batch.producer_id).unwrap_or_default();
            match kind {
                Some(1) => committed.records.extend(pending),
                _ => committed.aborted += pending.len(),
            }
        } else if batch.transactional {
            open.entry(batch.producer_id)
                .or_default()
                .extend(batch.records);
        } else {
            committed.records.extend(batch.records);
        }
    }
    committed.open = open.keys().copied().collect();
    committed
}

/// One Fetch v4 of up to 8 MiB from `offset`: the high watermark and the
/// record bytes.
fn fetch(stream: &mut TcpStream, topic: &str, partition: i32, offset: i64) -> (i64, Vec<u8>) {
    let mut body = Vec::new();
    body.extend(1i16.to_be_bytes()); // api key: Fetch
    body.extend(4i16.to_be_bytes()); // version
    body.extend(7i32.to_be_bytes()); // correlation id
    put_string(&mut body, "brooklet-test");
    body.extend((-1i32).to_be_bytes()); // replica id
    body.extend(100i32.to_be_bytes()); // max wait ms
    body.extend(0i32.to_be_bytes()); // min bytes
    body.extend((8i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation: read_uncommitted (we resolve markers ourselves)
    body.extend(1i32.to_be_bytes());
    put_string(&mut body, topic);
    body.extend(1i32.to_be_bytes());
    body.extend(partition.to_be_bytes());
    body.extend(offset.to_be_bytes());
    body.extend((8i32 << 20).to_be_bytes());
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend(body);
    stream.write_all(&request).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    let mut r = Reader(&response);
    r.i32(); // correlation id
    r.i32(); // throttle time
    assert_eq!(r.i32(), 1, "one topic");
    r.string();
    assert_eq!(r.i32(), 1, "one partition");
    r.i32();
    let error = r.i16();
    assert_eq!(error, 0, "fetch error code");
    let high = r.i64();
    r.i64(); // last stable offset
    let aborted = r.i32();
    for _ in 0..aborted.max(0) {
        r.i64();
        r.i64();
    }
    let len = r.i32();
    let records = if len > 0 {
        r.take(len as usize).to_vec()
    } else {
        Vec::new()
    };
    (high, records)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend(s.as_bytes());
}

fn parse_batches(bytes: &[u8], out: &mut Vec<Batch>) {
    let mut r = Reader(bytes);
    while r.0.len() >= 12 {
        let base_offset = r.i64();
        let length = r.i32() as usize;
        if r.0.len() < length {
            break; // a partial batch at the end of the response
        }
        let mut b = Reader(r.take(length));
        b.i32(); // partition leader epoch
        assert_eq!(b.i8(), 2, "record batch v2");
        b.i32(); // crc
        let attributes = b.i16();
        assert_eq!(attributes & 7, 0, "uncompressed batches");
        let last_offset_delta = b.i32();
        b.i64();
        b.i64();
        let producer_id = b.i64();
        b.i16();
        b.i32();
        let count = b.i32();
        let mut records = Vec::with_capacity(count.max(0) as usize);
        for _ in 0..count {
            let len = b.varint() as usize;
            let mut rec = Reader(b.take(len));
            rec.i8();
            rec.varint(); // timestamp delta
            rec.varint(); // offset delta
            let key_len = rec.varint();
            let key = (key_len >= 0).then(|| rec.take(key_len as usize).to_vec());
            let value_len = rec.varint();
            let value = if value_len >= 0 {
                rec.take(value_len as usize).to_vec()
            } else {
                Vec::new()
            };
            records.push((key, value));
        }
        out.push(Batch {
            base_offset,
            last_offset_delta,
            transactional: attributes & 0x10 != 0,
            control: attributes & 0x20 != 0,
            producer_id,
            records,
        });
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn i8(&mut self) -> i8 {
        self.take(1)[0] as i8
    }
    fn i16(&mut self) -> i16 {
        i16::from_be_bytes(self.take(2).try_into().unwrap())
    }
    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take(4).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let len = self.i16() as usize;
        String::from_utf8_lossy(self.take(len)).into_owned()
    }
    /// A zigzag varint (Kafka's record fields).
    fn varint(&mut self) -> i64 {
        let (mut value, mut shift) = (0u64, 0);
        loop {
            let byte = self.take(1)[0];
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        ((value >> 1) as i64) ^ -((value & 1) as i64)
    }
}
