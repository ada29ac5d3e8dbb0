//! Charts drawn on the server as SVG, so the page needs no script and no
//! network: a timeline (one point per batch, as Spark's Streaming tab) and
//! a histogram. A chart may carry a reference line — the batch interval on
//! the delay charts — so that a query falling behind is seen at a glance:
//! its points rise above the line.
//!
//! Each point is a `<circle class="point">` with its batch time and value
//! in `data-` attributes and a tooltip; the reference line is a
//! `<line class="reference">` with its value in `data-value`. Tests read
//! these from the DOM.

use std::fmt::Write as _;

use crate::explain::format_bytes;

use super::snapshot::time_of_day;

const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 150.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 22.0;

/// How a chart's values read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unit {
    /// Milliseconds, shown as `850 ms` or `1.2 s`.
    Millis,
    /// Rows per second.
    RowsPerSecond,
    /// Bytes, shown as `12.0 KiB`.
    Bytes,
}

impl Unit {
    pub(crate) fn show(self, value: f64) -> String {
        match self {
            Unit::Millis if value.abs() >= 10_000.0 => format!("{:.0} s", value / 1000.0),
            Unit::Millis if value.abs() >= 1000.0 => format!("{:.1} s", value / 1000.0),
            Unit::Millis if value.abs() >= 10.0 || value == 0.0 => format!("{value:.0} ms"),
            Unit::Millis => format!("{value:.1} ms"),
            Unit::RowsPerSecond if value >= 1e6 => format!("{:.1}M rows/s", value / 1e6),
            Unit::RowsPerSecond if value >= 1e4 => format!("{:.0}k rows/s", value / 1e3),
            Unit::RowsPerSecond => format!("{value:.0} rows/s"),
            Unit::Bytes => format_bytes(value.max(0.0) as u64),
        }
    }
}

/// A line across a chart at a value, with its label.
pub(crate) struct Reference {
    pub(crate) value: f64,
    pub(crate) label: String,
}

/// What a chart shows.
pub(crate) struct Chart<'a> {
    /// Its name in the DOM (`data-chart`), unique on the page.
    pub(crate) id: String,
    /// Its title.
    pub(crate) title: &'a str,
    pub(crate) unit: Unit,
    pub(crate) reference: Option<Reference>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn open(out: &mut String, chart: &Chart<'_>, class: &str, points: usize) {
    let _ = write!(
        out,
        "<svg class=\"chart {class}\" data-chart=\"{}\" data-points=\"{points}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\">\
         <title>{}</title>\
         <text class=\"title\" x=\"{LEFT}\" y=\"14\">{}</text>",
        escape(&chart.id),
        escape(chart.title),
        escape(chart.title)
    );
}

/// The top of the value axis: the largest value or reference, with room.
fn scale_top(values: impl Iterator<Item = f64>, reference: Option<&Reference>) -> f64 {
    let top = values
        .chain(reference.map(|r| r.value))
        .fold(0.0_f64, f64::max);
    if top > 0.0 { top * 1.15 } else { 1.0 }
}

fn y_axis(out: &mut String, unit: Unit, top: f64) {
    let bottom = HEIGHT - BOTTOM;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
         <text class=\"label\" x=\"{}\" y=\"{bottom}\" text-anchor=\"end\">0</text>",
        WIDTH - RIGHT,
        LEFT - 4.0,
        TOP + 4.0,
        escape(&unit.show(top)),
        LEFT - 4.0,
    );
}

fn value_y(value: f64, top: f64) -> f64 {
    let plot = HEIGHT - TOP - BOTTOM;
    HEIGHT - BOTTOM - (value.max(0.0) / top) * plot
}

fn horizontal_reference(out: &mut String, reference: &Reference, top: f64) {
    let y = value_y(reference.value, top);
    let _ = write!(
        out,
        "<line class=\"reference\" data-value=\"{}\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
         <text class=\"reference-label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        reference.value,
        WIDTH - RIGHT,
        WIDTH - RIGHT,
        y - 3.0,
        escape(&reference.label)
    );
}

/// A timeline: one point per `(batch time in epoch ms, value)`, in order.
pub(crate) fn timeline(chart: &Chart<'_>, points: &[(i64, f64)]) -> String {
    let mut out = String::new();
    open(&mut out, chart, "timeline", points.len());
    let top = scale_top(points.iter().map(|p| p.1), chart.reference.as_ref());
    y_axis(&mut out, chart.unit, top);
    if let Some(reference) = &chart.reference {
        horizontal_reference(&mut out, reference, top);
    }
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f.0, l.0),
        _ => {
            let _ = write!(
                out,
                "<text class=\"label\" x=\"{}\" y=\"{}\">no batches yet</text></svg>",
                WIDTH / 2.0 - 40.0,
                HEIGHT / 2.0
            );
            return out;
        }
    };
    let plot = WIDTH - LEFT - RIGHT;
    let x = |time: i64| {
        if last == first {
            LEFT + plot / 2.0
        } else {
            LEFT + (time - first) as f64 / (last - first) as f64 * plot
        }
    };
    let coordinates: Vec<String> = points
        .iter()
        .map(|(t, v)| format!("{:.1},{:.1}", x(*t), value_y(*v, top)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"series\" points=\"{}\"/>",
        coordinates.join(" ")
    );
    for (t, v) in points {
        let _ = write!(
            out,
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.2\" data-time=\"{t}\" data-value=\"{v}\">\
             <title>batch {} ({t} ms): {}</title></circle>",
            x(*t),
            value_y(*v, top),
            time_of_day(*t),
            escape(&chart.unit.show(*v))
        );
    }
    let _ = write!(
        out,
        "<text class=\"label\" x=\"{LEFT}\" y=\"{}\">{}</text>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        HEIGHT - 6.0,
        time_of_day(first),
        WIDTH - RIGHT,
        HEIGHT - 6.0,
        time_of_day(last)
    );
    out
}

/// How many bars a histogram has.
const BINS: usize = 20;

/// A histogram of `values`, on a value axis that also reaches the
/// reference (a vertical line there).
pub(crate) fn histogram(chart: &Chart<'_>, values: &[f64]) -> String {
    let mut out = String::new();
    open(&mut out, chart, "histogram", values.len());
    let top = scale_top(values.iter().copied(), chart.reference.as_ref());
    let mut counts = [0usize; BINS];
    for v in values {
        let bin = ((v.max(0.0) / top) * BINS as f64) as usize;
        counts[bin.min(BINS - 1)] += 1;
    }
    let most = counts.iter().copied().max().unwrap_or(0).max(1);
    let bottom = HEIGHT - BOTTOM;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{}\" y2=\"{bottom}\"/>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{most}</text>\
         <text class=\"label\" x=\"{}\" y=\"{bottom}\" text-anchor=\"end\">0</text>",
        WIDTH - RIGHT,
        LEFT - 4.0,
        TOP + 4.0,
        LEFT - 4.0
    );
    let width = plot_w / BINS as f64;
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / most as f64 * plot_h;
        let low = top * i as f64 / BINS as f64;
        let high = top * (i + 1) as f64 / BINS as f64;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" data-count=\"{count}\">\
             <title>{} to {}: {count} batches</title></rect>",
            LEFT + i as f64 * width + 1.0,
            bottom - h,
            width - 2.0,
            escape(&chart.unit.show(low)),
            escape(&chart.unit.show(high))
        );
    }
    if let Some(reference) = &chart.reference {
        let x = LEFT + reference.value / top * plot_w;
        // The label goes on the side of the line with room for it.
        let (label_x, anchor) = if x > LEFT + plot_w / 2.0 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = write!(
            out,
            "<line class=\"reference\" data-value=\"{}\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{bottom}\"/>\
             <text class=\"reference-label\" x=\"{label_x:.1}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            reference.value,
            TOP + 10.0,
            escape(&reference.label)
        );
    }
    let _ = write!(
        out,
        "<text class=\"label\" x=\"{LEFT}\" y=\"{}\">0</text>\
         <text class=\"label\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text></svg>",
        HEIGHT - 6.0,
        WIDTH - RIGHT,
        HEIGHT - 6.0,
        escape(&chart.unit.show(top))
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delay_chart() -> Chart<'static> {
        Chart {
            id: "delay".into(),
            title: "Total delay",
            unit: Unit::Millis,
            reference: Some(Reference {
                value: 1000.0,
                label: "batch interval 1 s".into(),
            }),
        }
    }

    fn attribute(svg: &str, element: &str, name: &str) -> Vec<f64> {
        svg.split(&format!("<{element} "))
            .skip(1)
            .filter_map(|e| {
                let start = e.find(&format!(" {name}=\""))? + name.len() + 3;
                e[start..].split('"').next()?.parse().ok()
            })
            .collect()
    }

    #[test]
    fn a_timeline_has_one_point_per_batch_and_points_above_the_line_sit_higher() {
        let points = [(1000, 200.0), (2000, 800.0), (3000, 2500.0)];
        let svg = timeline(&delay_chart(), &points);
        let ys = attribute(&svg, "circle", "cy");
        assert_eq!(ys.len(), 3);
        let line = attribute(&svg, "line class=\"reference\"", "y1");
        assert_eq!(line.len(), 1);
        // SVG's y grows downwards: above the line is a smaller y.
        assert!(
            ys[0] > line[0] && ys[1] > line[0] && ys[2] < line[0],
            "{svg}"
        );
        assert!(svg.contains("data-points=\"3\""));
    }

    #[test]
    fn a_histogram_counts_every_value_once() {
        let values = [1.0, 2.0, 3.0, 900.0, 1500.0];
        let svg = histogram(&delay_chart(), &values);
        let counts = attribute(&svg, "rect", "data-count");
        assert_eq!(counts.len(), BINS);
        assert_eq!(counts.iter().sum::<f64>(), 5.0);
    }

    #[test]
    fn units_read_as_people_read_them() {
        assert_eq!(Unit::Millis.show(0.4), "0.4 ms");
        assert_eq!(Unit::Millis.show(850.0), "850 ms");
        assert_eq!(Unit::Millis.show(1500.0), "1.5 s");
        assert_eq!(Unit::RowsPerSecond.show(25_000.0), "25k rows/s");
        assert_eq!(Unit::Bytes.show(2048.0), "2.0 KiB");
    }

    #[test]
    fn an_empty_timeline_says_so() {
        assert!(timeline(&delay_chart(), &[]).contains("no batches yet"));
    }
}
