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
    fn long_labels_are_shortened() {
        assert_eq!(shorten("A very long course title that goes on", 10), "A very lo…");
        assert_eq!(shorten("Short", 10), "Short");
    }
}
