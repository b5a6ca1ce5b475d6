//! How each class looks: an outline (signed distance function in a unit
//! frame), a fill pattern and two colours. Classes that the world file does
//! not describe get a look from their position in the class list, spread so
//! that neighbours differ in shape, pattern and hue. Only exact IEEE
//! operations are used (`sqrt`, `floor`, `abs`, arithmetic) so drawings are
//! bit-identical across platforms.

use serde::{Deserialize, Serialize};

use super::config::ClassConfig;

/// An object's outline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// A filled circle.
    Disc,
    /// A filled square.
    Square,
    /// An equilateral triangle.
    Triangle,
    /// A thick circle outline.
    Ring,
    /// A plus sign.
    Cross,
    /// A square stood on its corner.
    Diamond,
    /// An X.
    Saltire,
    /// A hollow square.
    Frame,
    /// A wide rounded bar.
    Bar,
    /// A disc with a bite taken out.
    Crescent,
    /// The upper half of a disc.
    HalfDisc,
    /// A regular hexagon.
    Hexagon,
    /// Three parallel bars.
    Stripes,
}

/// How an object's inside is coloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// One colour.
    Solid,
    /// Horizontal bands of main and accent colour.
    HorizontalStripes,
    /// Vertical bands.
    VerticalStripes,
    /// A checkerboard.
    Checker,
    /// Accent dots on the main colour.
    Dots,
    /// An accent border around the main colour.
    Outline,
    /// A left-to-right blend from main to accent colour.
    Gradient,
}

/// All shapes, in the order classes receive them.
pub const SHAPES: [Shape; 13] = [
    Shape::Disc,
    Shape::Square,
    Shape::Triangle,
    Shape::Ring,
    Shape::Cross,
    Shape::Diamond,
    Shape::Saltire,
    Shape::Frame,
    Shape::Bar,
    Shape::Crescent,
    Shape::HalfDisc,
    Shape::Hexagon,
    Shape::Stripes,
];

/// All patterns, in the order classes receive them.
pub const PATTERNS: [Pattern; 7] = [
    Pattern::Solid,
    Pattern::HorizontalStripes,
    Pattern::Checker,
    Pattern::Outline,
    Pattern::Dots,
    Pattern::VerticalStripes,
    Pattern::Gradient,
];

/// A class's complete look.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Appearance {
    /// Outline.
    pub shape: Shape,
    /// Fill pattern.
    pub pattern: Pattern,
    /// Main colour, RGB in [0, 1].
    pub colour: [f32; 3],
    /// Pattern colour, RGB in [0, 1].
    pub accent: [f32; 3],
}

impl Appearance {
    /// The look of class number `index`: the world file's choices where given,
    /// otherwise a look spread over shape, pattern and hue by `index`.
    pub fn for_class(index: usize, class: &ClassConfig) -> Self {
        let shape = class.shape.unwrap_or(SHAPES[index % SHAPES.len()]);
        // Stride 3 (coprime with 7) so consecutive classes differ in pattern.
        let pattern = class
            .pattern
            .unwrap_or(PATTERNS[(index * 3) % PATTERNS.len()]);
        let colour = class
            .colour
            .as_deref()
            .and_then(|h| parse_hex_colour(h).ok())
            .unwrap_or_else(|| auto_colour(index));
        let accent = class
            .accent
            .as_deref()
            .and_then(|h| parse_hex_colour(h).ok())
            .unwrap_or_else(|| auto_accent(colour));
        Self {
            shape,
            pattern,
            colour,
            accent,
        }
    }
}

/// Hues by the golden ratio so any number of classes stay spread; value
/// alternates so that even close hues differ in brightness.
fn auto_colour(index: usize) -> [f32; 3] {
    let hue = (index as f32 * 0.618_034).fract();
    let value = if index & 1 == 0 { 0.95 } else { 0.7 };
    hsv_to_rgb(hue, 0.85, value)
}

/// Bright colours get a dark accent and dark ones a light accent, so patterns
/// stay visible.
fn auto_accent(c: [f32; 3]) -> [f32; 3] {
    let luma = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    if luma > 0.5 {
        c.map(|v| v * 0.25)
    } else {
        c.map(|v| 0.75 + 0.25 * v)
    }
}

/// HSV in [0, 1] to RGB in [0, 1] (piecewise linear; no trigonometry).
pub fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = (h.fract() * 6.0).min(5.999_999);
    let sector = h6.floor();
    let f = h6 - sector;
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector as u32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Parses `#rrggbb` into RGB in [0, 1].
pub fn parse_hex_colour(hex: &str) -> Result<[f32; 3], String> {
    let digits = hex
        .strip_prefix('#')
        .ok_or_else(|| "colours are written #rrggbb".to_string())?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("colours are written #rrggbb with six hex digits".to_string());
    }
    let channel = |i: usize| {
        u8::from_str_radix(&digits[i..i + 2], 16)
            .map(|v| v as f32 / 255.0)
            .map_err(|e| e.to_string())
    };
    Ok([channel(0)?, channel(2)?, channel(4)?])
}

fn len(x: f32, y: f32) -> f32 {
    (x * x + y * y).sqrt()
}

/// Signed distance to an axis-aligned box of half-extents (bx, by).
fn sd_box(x: f32, y: f32, bx: f32, by: f32) -> f32 {
    let dx = x.abs() - bx;
    let dy = y.abs() - by;
    len(dx.max(0.0), dy.max(0.0)) + dx.max(dy).min(0.0)
}

/// Signed distance to an equilateral triangle of circumradius ~1, apex up.
fn sd_triangle(x: f32, y: f32) -> f32 {
    const K: f32 = 1.732_050_8; // sqrt(3)
    let r = 0.85;
    // Image y points down; flip so the apex points up on screen.
    let (mut px, mut py) = (x.abs() - r, -y + r / K - 0.15);
    if px + K * py > 0.0 {
        (px, py) = ((px - K * py) * 0.5, (-K * px - py) * 0.5);
    }
    px -= px.clamp(-2.0 * r, 0.0);
    -len(px, py) * py.signum()
}

/// Signed distance to a regular hexagon of inradius 0.85.
fn sd_hexagon(x: f32, y: f32) -> f32 {
    const KX: f32 = -0.866_025_4;
    const KY: f32 = 0.5;
    const KZ: f32 = 0.577_350_26;
    let r = 0.85;
    let (mut px, mut py) = (x.abs(), y.abs());
    let d = 2.0 * (KX * px + KY * py).min(0.0);
    px -= d * KX;
    py -= d * KY;
    px -= px.clamp(-KZ * r, KZ * r);
    py -= r;
    len(px, py) * py.signum()
}

impl Shape {
    /// Signed distance from (x, y) to the outline, in units of the object's
    /// radius: negative inside. The shape fits in the unit disc.
    pub fn distance(self, x: f32, y: f32) -> f32 {
        const S2: f32 = std::f32::consts::FRAC_1_SQRT_2;
        match self {
            Shape::Disc => len(x, y) - 0.95,
            Shape::Square => sd_box(x, y, 0.7, 0.7),
            Shape::Triangle => sd_triangle(x, y),
            Shape::Ring => (len(x, y) - 0.72).abs() - 0.24,
            Shape::Cross => sd_box(x, y, 0.95, 0.3).min(sd_box(x, y, 0.3, 0.95)),
            Shape::Diamond => (x.abs() + y.abs() - 0.97) * S2,
            Shape::Saltire => {
                let (u, v) = ((x + y) * S2, (x - y) * S2);
                sd_box(u, v, 0.95, 0.24).min(sd_box(u, v, 0.24, 0.95))
            }
            Shape::Frame => sd_box(x, y, 0.72, 0.72).max(-sd_box(x, y, 0.38, 0.38)),
            Shape::Bar => sd_box(x, y, 0.7, 0.12) - 0.22,
            Shape::Crescent => (len(x, y) - 0.95).max(-(len(x - 0.5, y - 0.1) - 0.7)),
            Shape::HalfDisc => (len(x, y - 0.35) - 0.95).max(y - 0.35),
            Shape::Hexagon => sd_hexagon(x, y),
            Shape::Stripes => sd_box(x, y, 0.85, 0.13)
                .min(sd_box(x, y - 0.55, 0.85, 0.13))
                .min(sd_box(x, y + 0.55, 0.85, 0.13)),
        }
    }
}

impl Pattern {
    /// Weight of the accent colour at unit-frame point (x, y), in [0, 1];
    /// `d` is the point's signed distance to the outline.
    pub fn accent_weight(self, x: f32, y: f32, d: f32) -> f32 {
        let parity = |v: f32| (v.floor() as i32).rem_euclid(2) as f32;
        match self {
            Pattern::Solid => 0.0,
            Pattern::HorizontalStripes => parity((y + 2.0) * 3.0),
            Pattern::VerticalStripes => parity((x + 2.0) * 3.0),
            Pattern::Checker => {
                parity((x + 2.0) * 2.5) * (1.0 - parity((y + 2.0) * 2.5))
                    + (1.0 - parity((x + 2.0) * 2.5)) * parity((y + 2.0) * 2.5)
            }
            Pattern::Dots => {
                let fx = ((x + 2.0) * 2.5).fract() - 0.5;
                let fy = ((y + 2.0) * 2.5).fract() - 0.5;
                if len(fx, fy) < 0.28 { 1.0 } else { 0.0 }
            }
            Pattern::Outline => {
                if d > -0.2 {
                    1.0
                } else {
                    0.0
                }
            }
            Pattern::Gradient => ((x + 1.0) * 0.5).clamp(0.0, 1.0),
        }
    }
}

/// tan(deg / 2) by Taylor series (portable: no libm), for the rational
/// rotation parameterisation used by the renderer.
pub(crate) fn tan_half_degrees(deg: f32) -> f32 {
    let x = deg as f64 * std::f64::consts::PI / 360.0;
    let (mut sin, mut cos) = (0.0f64, 0.0f64);
    let (mut term_s, mut term_c) = (x, 1.0f64);
    for k in 0..12 {
        sin += term_s;
        cos += term_c;
        let k = k as f64;
        term_s *= -x * x / ((2.0 * k + 2.0) * (2.0 * k + 3.0));
        term_c *= -x * x / ((2.0 * k + 1.0) * (2.0 * k + 2.0));
    }
    (sin / cos) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_inside_at_some_point_and_outside_far_away() {
        for shape in SHAPES {
            assert!(shape.distance(1.5, 1.5) > 0.0, "{shape:?}");
            let inside = (-10..=10)
                .flat_map(|i| (-10..=10).map(move |j| (i as f32 / 10.0, j as f32 / 10.0)))
                .filter(|&(x, y)| shape.distance(x, y) < 0.0)
                .count();
            assert!(inside > 20, "{shape:?} covers only {inside} grid points");
        }
    }

    #[test]
    fn hex_colours_parse_and_reject() {
        assert_eq!(parse_hex_colour("#ff0000"), Ok([1.0, 0.0, 0.0]));
        assert!(parse_hex_colour("ff0000").is_err());
        assert!(parse_hex_colour("#ff00").is_err());
        assert!(parse_hex_colour("#gg0000").is_err());
    }

    #[test]
    fn tan_half_matches_std() {
        for deg in [0.0f32, 10.0, 20.0, 45.0] {
            let want = (deg as f64 * std::f64::consts::PI / 360.0).tan() as f32;
            assert!((tan_half_degrees(deg) - want).abs() < 1e-6, "{deg}");
        }
    }
}
