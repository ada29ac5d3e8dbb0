//! Late rows: counted on the source they came from, and reported the first
//! time a query drops any, with what would have kept them.

use crate::operator::LateRows;
use crate::runtime::running_query::RunningQuery;
use crate::runtime::shared::Inner;
use crate::time::{BatchTime, format_duration};
use crate::watermark::{NO_WATERMARK, format_lateness, format_watermark};

impl Inner {
    /// Counts late rows on their source and warns the first time a query
    /// drops any.
    pub(super) fn report_late(&self, query: &mut RunningQuery, time: BatchTime, late: &[LateRows]) {
        for late in late.iter().filter(|l| l.rows > 0) {
            if let [only] = late.sources.as_slice()
                && let Some(s) = self.state().sources.get(only)
            {
                s.metrics.add_late(late.rows);
            }
            if query.reported_late {
                continue;
            }
            query.reported_late = true;
            let from = match late.sources.as_slice() {
                [one] => format!("source '{one}'"),
                many => format!("sources {}", many.join(", ")),
            };
            let declared: Vec<String> = late
                .sources
                .iter()
                .filter_map(|name| {
                    let w = self.state().sources.get(name)?.watermark.clone()?;
                    Some(format!(
                        "of source '{name}' (on {}, now {})",
                        w.column,
                        format_duration(w.delay)
                    ))
                })
                .collect();
            let plural = if late.rows == 1 { "" } else { "s" };
            if late.watermark == NO_WATERMARK {
                // Before any watermark nothing is behind it: these rows
                // had no event time a window takes.
                self.notices.send(format!(
                    "query '{}': dropped {} row{plural} with no event time (NULL, or outside \
                     ±2^52 ms) from {from} in batch {time}; they belong to no window. Later \
                     drops are only counted in the source's late rows",
                    query.shared.name, late.rows,
                ));
                continue;
            }
            self.notices.send(format!(
                "query '{}': dropped {} late row{plural} from {from} in batch {time} (up to {} \
                 behind the watermark {}; their windows had closed). Later drops are only \
                 counted in the source's late rows; to keep such rows, raise the watermark \
                 delay {}",
                query.shared.name,
                late.rows,
                format_lateness(late.max_behind),
                format_watermark(late.watermark),
                declared.join(" and ")
            ));
        }
    }
}
