//! Artefacts for people and other tools: PNG files, a labelled contact sheet
//! of samples, a JSON description of the world, and the per-image ground
//! truth of a split as JSON lines (class names, counts, boxes, caption,
//! mention spans with the hallucinated ones flagged).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

use super::font::{GLYPH_H, GLYPH_W, draw_text};
use super::{Annotation, Appearance, Image, Sample, Split, World, WorldError};

/// Writes an RGB image as an 8-bit PNG.
pub fn write_png(path: &Path, image: &Image) -> Result<(), WorldError> {
    let file = File::create(path).map_err(|e| WorldError::io(path, e))?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), image.width, image.height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| WorldError::png(path, e.to_string());
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&image.rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)
}

/// Label lines under each contact-sheet tile.
const LABEL_LINES: u32 = 3;

/// A grid of samples, each scaled up `scale` times (nearest neighbour) with
/// its ground-truth objects written underneath and, when the caption names
/// an absent object, that object after a `+` (e.g. `+KNIFE`).
pub fn contact_sheet(world: &World, samples: &[Sample], cols: usize, scale: u32) -> Image {
    let cols = cols.max(1);
    let scale = scale.max(1);
    let size = world.config().image_size * scale;
    let tile_w = size + 4;
    let tile_h = size + 4 + LABEL_LINES * (GLYPH_H + 2);
    let rows = samples.len().div_ceil(cols) as u32;
    let mut sheet = Image::new(cols as u32 * tile_w, rows.max(1) * tile_h);
    sheet.rgb.fill(24);
    let chars_per_line = (tile_w / (GLYPH_W + 1)) as usize;
    for (i, s) in samples.iter().enumerate() {
        let x0 = (i % cols) as u32 * tile_w + 2;
        let y0 = (i / cols) as u32 * tile_h + 2;
        blit_scaled(&mut sheet, &s.image, x0, y0, scale);
        let lines = wrap(&label(world, &s.annotation), chars_per_line);
        for (l, line) in lines.iter().take(LABEL_LINES as usize).enumerate() {
            let colour = if line.starts_with('+') {
                [255, 120, 120]
            } else {
                [235, 235, 235]
            };
            draw_text(
                &mut sheet,
                x0,
                y0 + size + 2 + l as u32 * (GLYPH_H + 2),
                line,
                colour,
            );
        }
    }
    sheet
}

/// "2 dog, cup" then "+knife" per hallucinated mention.
fn label(world: &World, a: &Annotation) -> Vec<String> {
    let mut truth: Vec<String> = a
        .objects
        .iter()
        .map(|o| {
            let name = world.class_name(o.class);
            if o.count > 1 {
                format!("{} {name}", o.count)
            } else {
                name.to_string()
            }
        })
        .collect();
    for m in a.mentions.iter().filter(|m| m.hallucinated) {
        truth.push(format!("+{}", world.class_name(m.class)));
    }
    truth
}

/// Greedy word wrap of comma-joined parts; a `+` part starts a new line.
fn wrap(parts: &[String], width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for part in parts {
        match lines.last_mut() {
            Some(line) if !part.starts_with('+') && line.len() + 2 + part.len() <= width => {
                line.push_str(", ");
                line.push_str(part);
            }
            _ => lines.push(part.clone()),
        }
    }
    lines
}

fn blit_scaled(dst: &mut Image, src: &Image, x0: u32, y0: u32, scale: u32) {
    for y in 0..src.height * scale {
        for x in 0..src.width * scale {
            let (dx, dy) = (x0 + x, y0 + y);
            if dx >= dst.width || dy >= dst.height {
                continue;
            }
            let p = src.pixel(x / scale, y / scale);
            let i = (dy as usize * dst.width as usize + dx as usize) * 3;
            dst.rgb[i..i + 3].copy_from_slice(&p);
        }
    }
}

/// The world as a JSON-friendly record (what a report or another tool needs
/// to know about it).
#[derive(Serialize)]
struct Summary<'a> {
    name: &'a str,
    image_size: u32,
    counts: super::Counts,
    seeds: super::Seeds,
    objects: super::ObjectsConfig,
    bias_rate: f64,
    classes: Vec<ClassRecord<'a>>,
    pairs: &'a [super::PairConfig],
}

#[derive(Serialize)]
struct ClassRecord<'a> {
    name: &'a str,
    plural: &'a str,
    partner: Option<&'a str>,
    appearance: Appearance,
}

/// One line of a ground-truth file, with names instead of ids.
#[derive(Serialize)]
struct GroundTruthLine<'a> {
    split: Split,
    index: u64,
    objects: Vec<(&'a str, u32)>,
    instances: Vec<InstanceRecord<'a>>,
    caption: &'a str,
    mentions: Vec<MentionRecord<'a>>,
}

#[derive(Serialize)]
struct InstanceRecord<'a> {
    class: &'a str,
    /// [x0, y0, x1, y1] of the enclosing circle, clipped to the image.
    bbox: [f32; 4],
}

#[derive(Serialize)]
struct MentionRecord<'a> {
    class: &'a str,
    text: &'a str,
    span: (usize, usize),
    count: u32,
    hallucinated: bool,
}

impl World {
    /// The world's description as pretty JSON (classes, looks, pairs, bias,
    /// counts, seeds).
    pub fn summary_json(&self) -> String {
        let cfg = self.config();
        let summary = Summary {
            name: &cfg.name,
            image_size: cfg.image_size,
            counts: cfg.counts,
            seeds: cfg.seeds,
            objects: cfg.objects,
            bias_rate: cfg.captions.bias_rate,
            classes: self
                .classes()
                .iter()
                .map(|c| ClassRecord {
                    name: &c.name,
                    plural: &c.plural,
                    partner: c.partner.map(|(p, _)| self.class_name(p)),
                    appearance: c.appearance,
                })
                .collect(),
            pairs: &cfg.pairs,
        };
        // Plain data with string keys: serialisation cannot fail.
        serde_json::to_string_pretty(&summary).unwrap_or_default()
    }

    /// One JSON line of ground truth for an annotation.
    pub fn ground_truth_line(&self, a: &Annotation) -> String {
        let size = self.config().image_size as f32;
        let line = GroundTruthLine {
            split: a.split,
            index: a.index,
            objects: a
                .objects
                .iter()
                .map(|o| (self.class_name(o.class), o.count))
                .collect(),
            instances: a
                .instances
                .iter()
                .map(|i| InstanceRecord {
                    class: self.class_name(i.class),
                    bbox: [
                        (i.center[0] - i.radius).max(0.0),
                        (i.center[1] - i.radius).max(0.0),
                        (i.center[0] + i.radius).min(size),
                        (i.center[1] + i.radius).min(size),
                    ],
                })
                .collect(),
            caption: &a.caption,
            mentions: a
                .mentions
                .iter()
                .map(|m| MentionRecord {
                    class: self.class_name(m.class),
                    text: a.caption.get(m.span.0..m.span.1).unwrap_or(""),
                    span: m.span,
                    count: m.count,
                    hallucinated: m.hallucinated,
                })
                .collect(),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// Writes the ground truth of the first `limit` images of a split (all
    /// when `None`) as JSON lines; drawing is skipped, so this is fast.
    pub fn write_ground_truth(
        &self,
        split: Split,
        path: &Path,
        limit: Option<usize>,
    ) -> Result<(), WorldError> {
        let n = limit.unwrap_or(usize::MAX).min(self.len(split));
        let file = File::create(path).map_err(|e| WorldError::io(path, e))?;
        let mut out = BufWriter::new(file);
        for i in 0..n as u64 {
            let a = self.annotate(split, i, 0);
            writeln!(out, "{}", self.ground_truth_line(&a)).map_err(|e| WorldError::io(path, e))?;
        }
        out.flush().map_err(|e| WorldError::io(path, e))
    }
}
