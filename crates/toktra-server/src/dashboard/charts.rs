//! Charts as SVG, rendered on the server: the page needs no script and no library
//! from a CDN, prints well, and shows the same numbers with JavaScript turned off.

use chrono::NaiveDate;
use maud::{Markup, html};

/// Colour-blind-friendly palette (Okabe–Ito, darkened for contrast on white).
pub const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7a5195", "#6b7280",
];

/// One stacked series: a name, its colour and one value per bucket.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<u64>,
}

/// The smallest "nice" number (1, 2, 2.5 or 5 × 10^k) at or above `v`, so the axis
/// ends on a round value.
pub fn nice_ceiling(v: u64) -> u64 {
    if v <= 1 {
        return 1;
    }
    let mut magnitude = 1u64;
    while magnitude.saturating_mul(10) < v {
        magnitude *= 10;
    }
    [1, 2, 5, 10]
        .into_iter()
        .map(|k| magnitude.saturating_mul(k))
        .chain([magnitude.saturating_mul(25) / 10])
        .filter(|c| *c >= v)
        .min()
        .unwrap_or(u64::MAX)
}

/// 1234 → "1.2k", 5_600_000 → "5.6M": short labels for axes and tiles.
pub fn compact(v: u64) -> String {
    let f = v as f64;
    let (div, suffix) = match v {
        0..1_000 => return v.to_string(),
        1_000..1_000_000 => (1e3, "k"),
        1_000_000..1_000_000_000 => (1e6, "M"),
        _ => (1e9, "B"),
    };
    let x = f / div;
    if x >= 100.0 {
        format!("{x:.0}{suffix}")
    } else {
        let s = format!("{x:.1}");
        format!("{}{suffix}", s.strip_suffix(".0").unwrap_or(&s))
    }
}

/// Groups digits: 1234567 → "1,234,567" (the exact figure next to every compact one).
pub fn grouped(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// Stacked bars, one per day, with a labelled value axis. Each bar segment carries a
/// `<title>` so hovering (or a screen reader) gives the exact figure.
pub fn stacked_bars(label: &str, days: &[NaiveDate], series: &[Series<'_>]) -> Markup {
    let totals: Vec<u64> = (0..days.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = nice_ceiling(totals.iter().copied().max().unwrap_or(0));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let slot = plot_w / days.len().max(1) as f64;
    let bar_w = (slot * 0.72).max(1.0);
    let y_of = |v: u64| TOP + plot_h - (v as f64 / max as f64) * plot_h;
    // A date label every few bars so they never overlap, whatever the range.
    let label_every = (days.len() as f64 / 7.0).ceil().max(1.0) as usize;
    html! {
        svg class="chart" viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(label)
            preserveAspectRatio="xMidYMid meet" {
            title { (label) }
            @for i in 0..=4u64 {
                @let v = max / 4 * i;
                @let y = y_of(v);
                line class="grid" x1=(LEFT) x2=(W - RIGHT) y1=(fmt(y)) y2=(fmt(y)) {}
                text class="axis" x=(LEFT - 6.0) y=(fmt(y + 4.0)) text-anchor="end" { (compact(v)) }
            }
            @for (i, day) in days.iter().enumerate() {
                @let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
                g {
                    @for (s, base, v) in segments(series, i) {
                        rect x=(fmt(x)) y=(fmt(y_of(base + v))) width=(fmt(bar_w))
                            height=(fmt(y_of(base) - y_of(base + v))) fill=(s.color) {
                            title { (day.format("%b %-d")) " · " (s.name) ": " (grouped(v)) " tokens" }
                        }
                    }
                }
                @if i % label_every == 0 {
                    text class="axis" x=(fmt(x + bar_w / 2.0)) y=(fmt(H - 8.0)) text-anchor="middle" {
                        (day.format("%b %-d"))
                    }
                }
            }
            line class="baseline" x1=(LEFT) x2=(W - RIGHT) y1=(fmt(TOP + plot_h)) y2=(fmt(TOP + plot_h)) {}
        }
    }
}

/// A single horizontal bar split into parts (the category mix), as SVG.
pub fn share_bar(label: &str, parts: &[(&str, &str, u64)]) -> Markup {
    let total: u64 = parts.iter().map(|p| p.2).sum();
    let mut x = 0.0;
    let rects: Vec<(&str, &str, u64, f64, f64)> = parts
        .iter()
        .filter(|p| p.2 > 0)
        .map(|&(name, color, v)| {
            let w = v as f64 / total as f64 * 100.0;
            let at = x;
            x += w;
            (name, color, v, at, w)
        })
        .collect();
    html! {
        svg class="share" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" aria-label=(label) {
            title { (label) }
            @if total == 0 {
                rect x="0" y="0" width="100" height="6" fill="#e5e7eb" {}
            }
            @for (name, color, v, at, w) in rects {
                rect x=(fmt(at)) y="0" width=(fmt(w)) height="6" fill=(color) {
                    title { (name) ": " (grouped(v)) " tokens" }
                }
            }
        }
    }
}

/// The non-empty segments of bucket `i`, each with the height it starts at.
fn segments<'s, 'a>(series: &'s [Series<'a>], i: usize) -> Vec<(&'s Series<'a>, u64, u64)> {
    let mut base = 0;
    series
        .iter()
        .filter_map(|s| {
            let v = s.values.get(i).copied().unwrap_or(0);
            (v > 0).then(|| {
                let at = base;
                base += v;
                (s, at, v)
            })
        })
        .collect()
}

fn fmt(v: f64) -> String {
    format!("{v:.1}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(21), 25);
        assert_eq!(nice_ceiling(26), 50);
        assert_eq!(nice_ceiling(1_234_567), 2_000_000);
        assert_eq!(nice_ceiling(100), 100);
    }

    #[test]
    fn number_labels() {
        assert_eq!(compact(999), "999");
        assert_eq!(compact(1_000), "1k");
        assert_eq!(compact(1_260), "1.3k");
        assert_eq!(compact(250_000), "250k");
        assert_eq!(compact(5_600_000), "5.6M");
        assert_eq!(compact(3_000_000_000), "3B");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1234), "1,234");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn bars_scale_to_the_tallest_day() {
        let days: Vec<NaiveDate> = (1..=3)
            .map(|d| NaiveDate::from_ymd_opt(2026, 11, d).unwrap())
            .collect();
        let series = [
            Series {
                name: "openai",
                color: PALETTE[0],
                values: vec![100, 0, 50],
            },
            Series {
                name: "anthropic",
                color: PALETTE[1],
                values: vec![100, 0, 0],
            },
        ];
        let svg = stacked_bars("Input tokens", &days, &series).into_string();
        // Three non-zero segments, the empty day draws nothing.
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("Nov 1 · anthropic: 100 tokens"));
        // The axis tops out at 200 (the day with 100 + 100), drawn as "200".
        assert!(svg.contains(">200</text>"), "{svg}");
    }
}
