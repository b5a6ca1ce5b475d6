//! The rasteriser: a noisy, slightly graded background, then each instance
//! in drawing order with an anti-aliased outline (alpha from the signed
//! distance, in pixels), its pattern, and per-pixel texture noise. Produces
//! an RGB u8 image and an instance mask (which instance owns each pixel).

use serde::Serialize;

use super::World;
use super::appearance::{Appearance, hsv_to_rgb};
use super::rng::Stream;
use super::scene::Instance;

/// An RGB image, row-major, 3 bytes per pixel (HWC).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `height * width * 3` bytes, RGB interleaved.
    #[serde(skip)]
    pub rgb: Vec<u8>,
}

impl Image {
    /// A black image.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            rgb: vec![0; width as usize * height as usize * 3],
        }
    }

    /// The image as f32 in [0, 1], channel-major (CHW), as a tensor wants it.
    pub fn to_chw_f32(&self) -> Vec<f32> {
        let hw = self.width as usize * self.height as usize;
        let mut out = vec![0.0f32; 3 * hw];
        self.write_chw_f32(&mut out);
        out
    }

    /// Writes the CHW f32 form into `out` (length `3 * height * width`), so a
    /// batch can be filled without copies.
    pub fn write_chw_f32(&self, out: &mut [f32]) {
        let hw = self.width as usize * self.height as usize;
        for (p, px) in self.rgb.chunks_exact(3).enumerate().take(hw) {
            for (c, &v) in px.iter().enumerate() {
                out[c * hw + p] = v as f32 / 255.0;
            }
        }
    }

    /// The RGB bytes of pixel (x, y).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Maps 10 random bits to a value in [-amp, amp].
fn noise10(bits: u32, amp: f32) -> f32 {
    ((bits & 1023) as f32 * (1.0 / 1023.0) - 0.5) * 2.0 * amp
}

/// The float picture being drawn plus its instance mask.
struct Canvas {
    size: usize,
    /// RGB, HWC, unclamped while drawing.
    buf: Vec<f32>,
    /// 0 = background, k = instance k-1 on top.
    mask: Vec<u8>,
}

/// Draws the instances; fills in their `visible_fraction`. The mask holds,
/// per pixel, 0 for background or 1 + the index of the topmost instance that
/// covers at least half of that pixel.
pub(crate) fn render(
    world: &World,
    instances: &mut [Instance],
    rng: &mut Stream,
) -> (Image, Vec<u8>) {
    let cfg = world.config();
    let size = cfg.image_size as usize;
    let mut canvas = Canvas {
        size,
        buf: vec![0.0f32; size * size * 3],
        mask: vec![0u8; size * size],
    };
    canvas.background(cfg.render.background_noise, rng);
    let mut own_area = vec![0u32; instances.len()];
    for (i, inst) in instances.iter().enumerate() {
        let look = &world.classes()[inst.class.0 as usize].appearance;
        // Instances are capped at 16 by validation, so the label fits a u8.
        own_area[i] = canvas.instance(inst, look, i as u8 + 1, cfg.render.texture_noise, rng);
    }
    let mut visible = vec![0u32; instances.len()];
    for &m in &canvas.mask {
        if m > 0 {
            visible[m as usize - 1] += 1;
        }
    }
    for (i, inst) in instances.iter_mut().enumerate() {
        inst.visible_fraction = if own_area[i] == 0 {
            0.0
        } else {
            visible[i] as f32 / own_area[i] as f32
        };
    }
    let rgb = canvas
        .buf
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
        .collect();
    let image = Image {
        width: size as u32,
        height: size as u32,
        rgb,
    };
    (image, canvas.mask)
}

impl Canvas {
    /// A desaturated base colour, a gentle linear gradient and per-pixel noise.
    fn background(&mut self, amp: f32, rng: &mut Stream) {
        let size = self.size;
        let base = hsv_to_rgb(rng.unit(), rng.range(0.0, 0.25), rng.range(0.3, 0.65));
        let gx = rng.range(-0.15, 0.15);
        let gy = rng.range(-0.15, 0.15);
        let inv = 1.0 / size as f32;
        for y in 0..size {
            for x in 0..size {
                let g = gx * ((x as f32 + 0.5) * inv - 0.5) + gy * ((y as f32 + 0.5) * inv - 0.5);
                let bits = rng.bits();
                let p = (y * size + x) * 3;
                for (c, &b) in base.iter().enumerate() {
                    self.buf[p + c] = b + g + noise10(bits >> (10 * c), amp);
                }
            }
        }
    }

    /// Draws one instance over its bounding box; returns how many pixels it
    /// covers at least half of.
    fn instance(
        &mut self,
        inst: &Instance,
        look: &Appearance,
        label: u8,
        texture: f32,
        rng: &mut Stream,
    ) -> u32 {
        let size = self.size;
        let r = inst.radius;
        let [cx, cy] = inst.center;
        let [cos, sin] = inst.rotation;
        let lo = |c: f32| (c - r - 1.0).floor().max(0.0) as usize;
        let hi = |c: f32| ((c + r + 1.0).ceil().max(0.0) as usize).min(size);
        let mut area = 0;
        for y in lo(cy)..hi(cy) {
            for x in lo(cx)..hi(cx) {
                let dx = (x as f32 + 0.5 - cx) / r;
                let dy = (y as f32 + 0.5 - cy) / r;
                let u = cos * dx + sin * dy;
                let v = -sin * dx + cos * dy;
                let d = look.shape.distance(u, v);
                let alpha = (0.5 - d * r).clamp(0.0, 1.0);
                if alpha <= 0.0 {
                    continue;
                }
                let w = look.pattern.accent_weight(u, v, d);
                let n = noise10(rng.bits(), texture);
                let p = (y * size + x) * 3;
                for c in 0..3 {
                    let col = inst.colour[c] * (1.0 - w) + inst.accent[c] * w + n;
                    self.buf[p + c] = self.buf[p + c] * (1.0 - alpha) + col * alpha;
                }
                if alpha >= 0.5 {
                    self.mask[y * size + x] = label;
                    area += 1;
                }
            }
        }
        area
    }
}
