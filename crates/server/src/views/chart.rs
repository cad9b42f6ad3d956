//! Small line charts of a metric's history, drawn as inline SVG on the server:
//! the observations as a line with dots, each threshold of the checks on that
//! metric as a dashed line with its label, and the values in words (the SVG's
//! title and description, and a visible caption) so nothing depends on seeing
//! the line.

use std::fmt::Write;

use super::document::esc;

const W: f64 = 320.0;
const H: f64 = 96.0;
const PAD: f64 = 8.0;

/// A threshold line: its label (`≥ 0.9 (search_quality)`) and value.
pub struct Threshold {
    pub label: String,
    pub value: f64,
}

/// The chart of `points` (time order, the x axis is their order), or a short
/// sentence when there are none.
pub fn line_chart(name: &str, points: &[f64], thresholds: &[Threshold]) -> String {
    let finite: Vec<f64> = points.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return format!(
            "<p class=\"muted\">No observations of {} yet.</p>",
            esc(name)
        );
    }
    let mut lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    for t in thresholds.iter().filter(|t| t.value.is_finite()) {
        lo = lo.min(t.value);
        hi = hi.max(t.value);
    }
    if (hi - lo).abs() < f64::EPSILON {
        lo -= 1.0;
        hi += 1.0;
    }
    let x = |i: usize| {
        if finite.len() == 1 {
            W / 2.0
        } else {
            PAD + (W - 2.0 * PAD) * i as f64 / (finite.len() - 1) as f64
        }
    };
    let y = |v: f64| PAD + (H - 2.0 * PAD) * (hi - v) / (hi - lo);
    let last = finite[finite.len() - 1];
    let id = format!("chart-{}", anchor(name));
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\">\
         <title id=\"{id}-t\">{}</title><desc id=\"{id}-d\">{} observations from {} to {}, latest {}{}</desc>",
        esc(name),
        finite.len(),
        num(lo.max(finite.iter().copied().fold(f64::INFINITY, f64::min))),
        num(finite.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        num(last),
        thresholds
            .iter()
            .map(|t| format!("; threshold {}", esc(&t.label)))
            .collect::<String>()
    );
    for t in thresholds.iter().filter(|t| t.value.is_finite()) {
        let ty = y(t.value);
        let _ = write!(
            out,
            "<line class=\"threshold\" x1=\"{PAD}\" x2=\"{}\" y1=\"{ty:.1}\" y2=\"{ty:.1}\"/>\
             <text class=\"threshold-label\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - PAD,
            W - PAD,
            (ty - 3.0).max(10.0),
            esc(&t.label)
        );
    }
    let path: Vec<String> = finite
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
        .collect();
    let _ = write!(
        out,
        "<polyline class=\"series\" points=\"{}\"/>",
        path.join(" ")
    );
    for (i, v) in finite.iter().enumerate() {
        let _ = write!(
            out,
            "<circle class=\"dot\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\"/>",
            x(i),
            y(*v)
        );
    }
    out.push_str("</svg>");
    out
}

/// A number as a person reads it: at most three decimals, no trailing zeros.
pub fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn anchor(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_shows_its_values_in_words_and_its_thresholds() {
        let svg = line_chart(
            "search_precision",
            &[0.8, 0.85, 0.92],
            &[Threshold {
                label: "≥ 0.9 (precision)".into(),
                value: 0.9,
            }],
        );
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(
            svg.contains("3 observations from 0.8 to 0.92, latest 0.92"),
            "{svg}"
        );
        assert!(svg.contains("class=\"threshold\""));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }

    #[test]
    fn empty_flat_and_hostile_series_are_handled() {
        assert!(line_chart("m", &[], &[]).contains("No observations"));
        let flat = line_chart("m", &[2.0, 2.0], &[]);
        assert!(!flat.contains("NaN"), "{flat}");
        let one = line_chart("<script>", &[f64::NAN, 1.0], &[]);
        assert!(!one.contains("<script>"), "{one}");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.0001), "0");
    }
}
