//! Chart geometry for the console's inline SVG: numbers in, rectangles out. The templates draw
//! them, so every label goes through the templates' escaping and no script or style is needed.

/// One horizontal bar with its label and the value written beside it.
pub struct Bar {
    pub label: String,
    pub value: i64,
    pub y: u32,
    pub width: u32,
    /// A second, darker bar inside the first (completions within enrollments); 0 for none.
    pub inner_width: u32,
}

/// Horizontal bars for a short ranked list (top courses, a course's funnel).
pub struct Bars {
    pub bars: Vec<Bar>,
    pub height: u32,
}

/// Where the bars start (after the label column) and how wide the longest one is.
pub const BAR_LEFT: u32 = 180;
pub const BAR_SPAN: u32 = 360;
const BAR_PITCH: u32 = 28;

/// `(label, value, inner)` rows scaled to the largest value.
pub fn bars(rows: &[(String, i64, i64)]) -> Bars {
    let max = rows.iter().map(|r| r.1.max(r.2)).max().unwrap_or(0).max(1);
    let scale = |v: i64| ((v.max(0) as f64 / max as f64) * BAR_SPAN as f64).round() as u32;
    let bars = rows
        .iter()
        .enumerate()
        .map(|(i, (label, value, inner))| Bar {
            label: shorten(label, 26),
            value: *value,
            y: i as u32 * BAR_PITCH,
            width: scale(*value).max(1),
            inner_width: scale(*inner),
        })
        .collect();
    Bars { bars, height: (rows.len() as u32 * BAR_PITCH).max(BAR_PITCH) }
}

/// One day of a time series.
pub struct Column {
    pub x: u32,
    pub y: u32,
    pub height: u32,
    pub value: i64,
    pub date: String,
    /// The date without its year, for the axis.
    pub label: String,
    /// Every seventh day is labelled, so a month stays readable.
    pub labelled: bool,
}

pub struct Columns {
    pub columns: Vec<Column>,
    pub width: u32,
    pub max: i64,
}

pub const COLUMN_HEIGHT: u32 = 120;
const COLUMN_PITCH: u32 = 14;

/// `(date, value)` per day, scaled to the busiest day.
pub fn columns(days: &[(String, i64)]) -> Columns {
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let columns = days
        .iter()
        .enumerate()
        .map(|(i, (date, value))| {
            let height = ((value.max(&0) * COLUMN_HEIGHT as i64) as f64 / max as f64).round() as u32;
            Column {
                x: i as u32 * COLUMN_PITCH,
                y: COLUMN_HEIGHT - height,
                height,
                value: *value,
                date: date.clone(),
                label: date.get(5..).unwrap_or(date).to_string(),
                labelled: i % 7 == 0,
            }
        })
        .collect();
    Columns { columns, width: (days.len() as u32 * COLUMN_PITCH).max(COLUMN_PITCH), max }
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut short: String = text.chars().take(max - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_value() {
        let chart = bars(&[("Python".into(), 40, 10), ("Scratch".into(), 20, 20), ("Empty".into(), 0, 0)]);
        let widths: Vec<_> = chart.bars.iter().map(|b| (b.width, b.inner_width)).collect();
        assert_eq!(widths, [(BAR_SPAN, BAR_SPAN / 4), (BAR_SPAN / 2, BAR_SPAN / 2), (1, 0)]);
        assert_eq!(chart.height, 3 * BAR_PITCH);
    }

    #[test]
    fn columns_scale_to_the_busiest_day_and_an_empty_series_is_flat() {
        let chart = columns(&[("d1".into(), 3), ("d2".into(), 6), ("d3".into(), 0)]);
        let heights: Vec<_> = chart.columns.iter().map(|c| c.height).collect();
        assert_eq!(heights, [COLUMN_HEIGHT / 2, COLUMN_HEIGHT, 0]);
        assert!(columns(&[("d".into(), 0)]).columns.iter().all(|c| c.height == 0));
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(shorten("A very long course title that goes on", 10), "A very lo…");
        assert_eq!(shorten("Short", 10), "Short");
    }
}
