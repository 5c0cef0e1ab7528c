//! Charts drawn on the server as SVG: no script, readable by screen readers (a title, a
//! description, and each bar's value in its own title).

use std::fmt::Write as _;

const WIDTH: u64 = 600;
const HEIGHT: u64 = 120;
const MIN_SLOTS: usize = 30;

/// A bar chart of `(label, value)` in order, as an inline SVG element (escaped text).
pub(crate) fn bars(title: &str, unit: &str, data: &[(String, u64)]) -> String {
    let max = data.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    // At least this many slots, so that a few values make narrow bars, not a block.
    let n = data.len().max(MIN_SLOTS) as u64;
    let step = WIDTH / n;
    let bar = step.saturating_sub(1).max(1);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {h}" role="img" aria-labelledby="c-{id}"><title id="c-{id}">{t}: {count} values, highest {max} {u}</title>"#,
        count = data.len(),
        h = HEIGHT + 14,
        id = slug(title),
        t = escape(title),
        u = escape(unit),
    );
    for (i, (label, v)) in data.iter().enumerate() {
        // In u128: a value near u64::MAX (a provider's price is its own to set) times the height.
        let h = (u128::from(*v) * u128::from(HEIGHT) / u128::from(max)) as u64;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{y}" width="{bar}" height="{h}"><title>{l}: {v} {u}</title></rect>"#,
            x = i as u64 * step,
            y = HEIGHT - h,
            l = escape(label),
            u = escape(unit),
        );
    }
    let _ = write!(
        svg,
        r#"<text x="0" y="{y}">{first}</text><text x="{WIDTH}" y="{y}" text-anchor="end">{last}</text></svg>"#,
        y = HEIGHT + 12,
        first = escape(data.first().map(|d| d.0.as_str()).unwrap_or("")),
        last = escape(data.last().map(|d| d.0.as_str()).unwrap_or("")),
    );
    svg
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_highest_and_escape_their_text() {
        let svg = bars("A <b>", "tx", &[("1".into(), 5), ("2".into(), 10)]);
        assert!(svg.contains(r#"height="60""#), "{svg}");
        assert!(svg.contains(r#"height="120""#), "{svg}");
        assert!(svg.contains("A &lt;b&gt;") && !svg.contains("<b>"), "{svg}");
        // The largest values scale without overflowing.
        let svg = bars(
            "big",
            "x",
            &[("a".into(), u64::MAX), ("b".into(), u64::MAX / 2)],
        );
        assert!(
            svg.contains(r#"height="120""#) && svg.contains(r#"height="59""#),
            "{svg}"
        );
        // No data: an empty chart, not a division by zero.
        assert!(bars("empty", "x", &[]).starts_with("<svg"));
    }
}
