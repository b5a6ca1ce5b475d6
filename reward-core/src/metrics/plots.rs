//! Hand-written SVG figures: overlaid histograms with a legend and a
//! scatter plot, one or more panels side by side, axis labels and ticks.
//! Plain SVG 1.1 text (no scripts, no external fonts) that any browser
//! shows; each data series is a `<g class="series" data-name="...">` so
//! tests and people can find it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 340.0;
const MARGIN_L: f64 = 62.0;
const MARGIN_R: f64 = 18.0;
const MARGIN_T: f64 = 40.0;
const MARGIN_B: f64 = 52.0;
const TITLE_H: f64 = 34.0;
/// Colour-blind-safe colours (Okabe-Ito) for the series, in order.
const COLOURS: &[&str] = &[
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9",
];

/// One named series of values.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Values (histogram) or x values (scatter).
    pub values: Vec<f64>,
}

/// One panel of a figure.
#[derive(Clone, Debug, PartialEq)]
pub enum Panel {
    /// Overlaid histograms on shared bins, each normalised to fractions of
    /// its own series so groups of different sizes compare.
    Histogram {
        /// Panel title.
        title: String,
        /// X axis label.
        x_label: String,
        /// The series.
        series: Vec<Series>,
        /// Number of bins.
        bins: usize,
    },
    /// A scatter plot of paired points.
    Scatter {
        /// Panel title.
        title: String,
        /// X axis label.
        x_label: String,
        /// Y axis label.
        y_label: String,
        /// The points.
        points: Vec<(f64, f64)>,
    },
}

/// Renders panels side by side under a figure title.
pub fn render(title: &str, panels: &[Panel]) -> String {
    let width = PANEL_W * panels.len().max(1) as f64;
    let height = PANEL_H + TITLE_H;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>{t}</title>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text class=\"figure-title\" x=\"{x}\" y=\"22\" text-anchor=\"middle\" font-size=\"16\">{t}</text>\n",
        t = escape(title),
        x = width / 2.0,
    );
    for (i, p) in panels.iter().enumerate() {
        let _ = writeln!(
            s,
            "<g class=\"panel\" transform=\"translate({} {TITLE_H})\">",
            i as f64 * PANEL_W
        );
        match p {
            Panel::Histogram {
                title,
                x_label,
                series,
                bins,
            } => histogram(&mut s, title, x_label, series, (*bins).max(1)),
            Panel::Scatter {
                title,
                x_label,
                y_label,
                points,
            } => scatter(&mut s, title, x_label, y_label, points),
        }
        s.push_str("</g>\n");
    }
    s.push_str("</svg>\n");
    s
}

/// Plot-area geometry: data ranges mapped to panel pixels.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        MARGIN_L + (x - self.x0) / span(self.x0, self.x1) * (PANEL_W - MARGIN_L - MARGIN_R)
    }
    fn py(&self, y: f64) -> f64 {
        PANEL_H
            - MARGIN_B
            - (y - self.y0) / span(self.y0, self.y1) * (PANEL_H - MARGIN_T - MARGIN_B)
    }
}

fn span(a: f64, b: f64) -> f64 {
    if b > a { b - a } else { 1.0 }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// 4% room on both sides so points on the extremes stay inside the frame.
fn padded((lo, hi): (f64, f64)) -> (f64, f64) {
    let pad = (hi - lo) * 0.04;
    (lo - pad, hi + pad)
}

fn histogram(s: &mut String, title: &str, x_label: &str, series: &[Series], bins: usize) {
    let (lo, hi) = range(series.iter().flat_map(|x| x.values.iter().copied()));
    let width = (hi - lo) / bins as f64;
    let fractions: Vec<Vec<f64>> = series
        .iter()
        .map(|x| {
            let mut counts = alloc::vec![0.0; bins];
            let finite: Vec<f64> = x.values.iter().copied().filter(|v| v.is_finite()).collect();
            for v in &finite {
                let b = (((v - lo) / width) as usize).min(bins - 1);
                counts[b] += 1.0;
            }
            let n = finite.len().max(1) as f64;
            counts.into_iter().map(|c| c / n).collect()
        })
        .collect();
    let ymax = fractions
        .iter()
        .flatten()
        .copied()
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    let f = Frame {
        x0: lo,
        x1: hi,
        y0: 0.0,
        y1: ymax,
    };
    axes(s, &f, title, x_label, "fraction of series");
    for (k, (x, fr)) in series.iter().zip(&fractions).enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let _ = writeln!(
            s,
            "<g class=\"series\" data-name=\"{}\" fill=\"{colour}\" fill-opacity=\"0.45\" stroke=\"{colour}\">",
            escape(&x.name)
        );
        for (b, v) in fr.iter().enumerate() {
            let (xa, xb) = (
                f.px(lo + b as f64 * width),
                f.px(lo + (b + 1) as f64 * width),
            );
            let (ya, yb) = (f.py(*v), f.py(0.0));
            let _ = writeln!(
                s,
                "<rect x=\"{xa:.2}\" y=\"{ya:.2}\" width=\"{:.2}\" height=\"{:.2}\"/>",
                xb - xa,
                yb - ya
            );
        }
        s.push_str("</g>\n");
        legend(s, k, &format!("{} (n={})", x.name, x.values.len()), colour);
    }
}

fn scatter(s: &mut String, title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) {
    let (x0, x1) = padded(range(points.iter().map(|p| p.0)));
    let (y0, y1) = padded(range(points.iter().map(|p| p.1)));
    let f = Frame { x0, x1, y0, y1 };
    axes(s, &f, title, x_label, y_label);
    let _ = writeln!(
        s,
        "<g class=\"series\" data-name=\"points\" fill=\"{}\" fill-opacity=\"0.6\">",
        COLOURS[0]
    );
    for &(x, y) in points.iter().filter(|p| p.0.is_finite() && p.1.is_finite()) {
        let _ = writeln!(
            s,
            "<circle cx=\"{:.2}\" cy=\"{:.2}\" r=\"3\"/>",
            f.px(x),
            f.py(y)
        );
    }
    s.push_str("</g>\n");
}

/// Axis lines, five ticks per axis with labels, axis titles and the panel title.
fn axes(s: &mut String, f: &Frame, title: &str, x_label: &str, y_label: &str) {
    let (bx, by) = (MARGIN_L, PANEL_H - MARGIN_B);
    let (rx, ty) = (PANEL_W - MARGIN_R, MARGIN_T);
    let _ = writeln!(
        s,
        "<text class=\"panel-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>",
        PANEL_W / 2.0,
        MARGIN_T - 14.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        "<g class=\"axes\" stroke=\"black\"><line x1=\"{bx}\" y1=\"{by}\" x2=\"{rx}\" y2=\"{by}\"/><line x1=\"{bx}\" y1=\"{by}\" x2=\"{bx}\" y2=\"{ty}\"/></g>"
    );
    for i in 0..=4 {
        let t = i as f64 / 4.0;
        let (xv, yv) = (f.x0 + t * (f.x1 - f.x0), f.y0 + t * (f.y1 - f.y0));
        let (x, y) = (f.px(xv), f.py(yv));
        let _ = writeln!(
            s,
            "<line x1=\"{x:.2}\" y1=\"{by}\" x2=\"{x:.2}\" y2=\"{}\" stroke=\"black\"/><text x=\"{x:.2}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            by + 5.0,
            by + 18.0,
            tick(xv, f.x1 - f.x0)
        );
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{y:.2}\" x2=\"{bx}\" y2=\"{y:.2}\" stroke=\"black\"/><text x=\"{}\" y=\"{:.2}\" text-anchor=\"end\">{}</text>",
            bx - 5.0,
            bx - 8.0,
            y + 4.0,
            tick(yv, f.y1 - f.y0)
        );
    }
    let _ = writeln!(
        s,
        "<text class=\"x-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
        (bx + rx) / 2.0,
        PANEL_H - 12.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        "<text class=\"y-label\" transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        (by + ty) / 2.0,
        escape(y_label)
    );
}

fn legend(s: &mut String, k: usize, label: &str, colour: &str) {
    let (x, y) = (PANEL_W - MARGIN_R - 170.0, MARGIN_T + 6.0 + 18.0 * k as f64);
    let _ = writeln!(
        s,
        "<g class=\"legend\"><rect x=\"{}\" y=\"{}\" width=\"176\" height=\"17\" fill=\"white\" fill-opacity=\"0.85\"/><rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{colour}\" fill-opacity=\"0.45\" stroke=\"{colour}\"/><text x=\"{}\" y=\"{}\">{}</text></g>",
        x - 3.0,
        y - 2.5,
        x + 18.0,
        y + 10.5,
        escape(label)
    );
}

/// A tick label with as many decimals as the axis span needs.
fn tick(v: f64, span: f64) -> String {
    if libm::fabs(v) >= 1e5 {
        return format!("{v:.1e}");
    }
    let digits = 2.0 - libm::floor(libm::log10(span.max(1e-12)));
    let decimals = digits.clamp(0.0, 6.0) as usize;
    let text = format!("{v:.decimals$}");
    // "-0.00" reads as a different number from "0.00".
    if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.') {
        String::from(&text[1..])
    } else {
        text
    }
}

/// Escapes text for SVG element content and attribute values.
pub fn escape(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
