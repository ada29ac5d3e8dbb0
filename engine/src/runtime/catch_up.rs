//! Progress through the down time after a restart. A query that resumes
//! from a checkpoint runs every batch whose time passed while it was down,
//! back to back, before it runs on time again; when that is many batches
//! ([`REPORTED_FROM`] or more), a notice says how many are left, at the
//! first batch, then at most once a second, and when the last one ran.

use std::time::{Duration, Instant};

use crate::notice::Notices;
use crate::time::BatchTime;

/// Down times shorter than this many batches are not reported.
pub(crate) const REPORTED_FROM: u64 = 10;

/// How often, at most, progress is reported.
const EVERY: Duration = Duration::from_secs(1);

/// The down time being replayed.
#[derive(Debug)]
pub(crate) struct CatchUp {
    first: BatchTime,
    /// The last batch of the down time: the last batch time that had
    /// passed when the engine started again.
    last: BatchTime,
    interval: Duration,
    started: Instant,
    reported: Option<Instant>,
}

impl CatchUp {
    /// The down time from `first` to `last` (batch times, both included),
    /// if it is long enough to report.
    pub(crate) fn new(first: BatchTime, last: BatchTime, interval: Duration) -> Option<Self> {
        let catch_up = CatchUp {
            first,
            last,
            interval,
            started: Instant::now(),
            reported: None,
        };
        (catch_up.batches_between(first, last) >= REPORTED_FROM).then_some(catch_up)
    }

    /// Batches from `from` to `to`, both included.
    fn batches_between(&self, from: BatchTime, to: BatchTime) -> u64 {
        let step = self.interval.as_millis().max(1) as i64;
        ((to.millis() - from.millis()) / step + 1).max(0) as u64
    }

    /// Batch `time` ran: reports progress when it is due; false once the
    /// down time is over.
    pub(crate) fn ran(&mut self, time: BatchTime, notices: &Notices) -> bool {
        let total = self.batches_between(self.first, self.last);
        if time >= self.last {
            notices.send(format!(
                "down time replayed: {total} batches in {:.1} s; batches run on time again",
                self.started.elapsed().as_secs_f64()
            ));
            return false;
        }
        let due = self.reported.is_none_or(|at| at.elapsed() >= EVERY);
        if due {
            self.reported = Some(Instant::now());
            let done = self.batches_between(self.first, time);
            notices.send(format!(
                "replaying the down time: batch {time} ran, {done} of {total} batches done, {} left",
                total - done
            ));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_down_time_is_reported_first_and_at_its_end() {
        let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let into = said.clone();
        let notices = Notices::new(move |m| into.lock().unwrap().push(m.to_string()));
        let second = Duration::from_secs(1);
        let t = BatchTime::from_millis;
        assert!(CatchUp::new(t(1000), t(9000), second).is_none());
        let mut catch_up = CatchUp::new(t(1000), t(20_000), second).unwrap();
        assert!(catch_up.ran(t(1000), &notices));
        for s in 2..20 {
            assert!(catch_up.ran(t(s * 1000), &notices));
        }
        assert!(!catch_up.ran(t(20_000), &notices));
        let said = said.lock().unwrap().clone();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].contains("1 of 20 batches done, 19 left"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("down time replayed: 20 batches"),
            "{said:?}"
        );
    }
}
