//! Pictures of the synthetic world: classes are visually distinct (a
//! nearest-centroid classifier on simple colour and shape features, trained
//! on training images and scored on test images, beats chance by far);
//! objects stay visible despite overlap; images, tensors and PNGs agree.

use gpu_train::world::{Sample, Split, World, contact_sheet, write_png};

/// Simple per-instance features from the pixels it owns on top.
fn features(s: &Sample, k: usize, colour: bool) -> Option<Vec<f64>> {
    let inst = &s.annotation.instances[k];
    if inst.visible_fraction < 0.85 {
        return None;
    }
    let size = s.image.width as usize;
    let (mut sum, mut sq, mut n) = ([0f64; 3], [0f64; 3], 0f64);
    let (mut inner, mut dist, mut mxx, mut myy) = (0f64, 0f64, 0f64, 0f64);
    for (p, &m) in s.mask.iter().enumerate() {
        if m as usize != k + 1 {
            continue;
        }
        let (x, y) = ((p % size) as f64 + 0.5, (p / size) as f64 + 0.5);
        let dx = (x - inst.center[0] as f64) / inst.radius as f64;
        let dy = (y - inst.center[1] as f64) / inst.radius as f64;
        let r = (dx * dx + dy * dy).sqrt();
        inner += f64::from(u8::from(r < 0.45));
        dist += r;
        mxx += dx * dx;
        myy += dy * dy;
        let px = &s.image.rgb[p * 3..p * 3 + 3];
        for c in 0..3 {
            sum[c] += px[c] as f64;
            sq[c] += (px[c] as f64).powi(2);
        }
        n += 1.0;
    }
    if n < 8.0 {
        return None;
    }
    let area = n / (inst.radius as f64).powi(2);
    let mut f = vec![area, inner / n, dist / n, (mxx - myy).abs() / n];
    if colour {
        for c in 0..3 {
            let mean = sum[c] / n;
            f.push(mean / 255.0);
            f.push((sq[c] / n - mean * mean).max(0.0).sqrt() / 255.0);
        }
    }
    Some(f)
}

fn dataset(world: &World, split: Split, images: u64, colour: bool) -> Vec<(usize, Vec<f64>)> {
    let mut out = Vec::new();
    for s in world.generate(split, 0..images, 2) {
        for (k, inst) in s.annotation.instances.iter().enumerate() {
            if let Some(f) = features(&s, k, colour) {
                out.push((inst.class.0 as usize, f));
            }
        }
    }
    out
}

/// Accuracy of a nearest-centroid classifier with standardised features.
fn nearest_centroid_accuracy(world: &World, colour: bool) -> f64 {
    let classes = world.classes().len();
    let train = dataset(world, Split::Train, 500, colour);
    let test = dataset(world, Split::Test, 300, colour);
    let dim = train[0].1.len();
    let mut mean = vec![0f64; dim];
    let mut var = vec![0f64; dim];
    for (_, f) in &train {
        for d in 0..dim {
            mean[d] += f[d] / train.len() as f64;
        }
    }
    for (_, f) in &train {
        for d in 0..dim {
            var[d] += (f[d] - mean[d]).powi(2) / train.len() as f64;
        }
    }
    let z = |f: &[f64]| {
        (0..dim)
            .map(|d| (f[d] - mean[d]) / var[d].sqrt().max(1e-9))
            .collect::<Vec<_>>()
    };
    let mut centroids = vec![vec![0f64; dim]; classes];
    let mut counts = vec![0f64; classes];
    for (c, f) in &train {
        for (d, v) in z(f).into_iter().enumerate() {
            centroids[*c][d] += v;
        }
        counts[*c] += 1.0;
    }
    for (c, n) in counts.iter().enumerate() {
        assert!(*n > 10.0, "class {c} has only {n} clean training instances");
        centroids[c].iter_mut().for_each(|v| *v /= n);
    }
    let correct = test
        .iter()
        .filter(|(c, f)| {
            let f = z(f);
            let dist = |k: usize| {
                centroids[k]
                    .iter()
                    .zip(&f)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
            };
            (0..classes).min_by(|&a, &b| dist(a).total_cmp(&dist(b))) == Some(*c)
        })
        .count();
    correct as f64 / test.len() as f64
}

#[test]
fn classes_are_visually_distinct() {
    let world = World::default_world().unwrap();
    let chance = 1.0 / world.classes().len() as f64;
    let full = nearest_centroid_accuracy(&world, true);
    let shape_only = nearest_centroid_accuracy(&world, false);
    eprintln!(
        "nearest centroid: colour+shape {full:.3}, shape only {shape_only:.3}, chance {chance:.3}"
    );
    assert!(full > 0.9, "colour+shape accuracy {full:.3}");
    assert!(
        shape_only > 4.0 * chance,
        "shape-only accuracy {shape_only:.3}"
    );
}

#[test]
fn objects_stay_visible() {
    let world = World::default_world().unwrap();
    let mut fractions: Vec<f32> = world
        .generate(Split::Test, 0..400, 2)
        .iter()
        .flat_map(|s| {
            s.annotation
                .instances
                .iter()
                .map(|i| i.visible_fraction)
                .collect::<Vec<_>>()
        })
        .collect();
    fractions.sort_by(f32::total_cmp);
    let p05 = fractions[fractions.len() / 20];
    eprintln!(
        "visible fraction: min {:.3}, 5th percentile {p05:.3}",
        fractions[0]
    );
    assert!(p05 > 0.5, "5% of objects are less than {p05:.2} visible");
    assert!(
        fractions[0] > 0.1,
        "an object is almost hidden: {:.3}",
        fractions[0]
    );
}

#[test]
fn tensors_match_bytes_and_png_round_trips() {
    let world = World::tiny_world().unwrap();
    let s = world.sample(Split::Validation, 2);
    let size = world.config().image_size;
    assert_eq!((s.image.width, s.image.height), (size, size));
    let chw = s.image.to_chw_f32();
    let hw = (size * size) as usize;
    let [r, g, b] = s.image.pixel(5, 7);
    let at = 7 * size as usize + 5;
    assert_eq!(
        [chw[at], chw[hw + at], chw[2 * hw + at]],
        [r, g, b].map(|v| v as f32 / 255.0)
    );
    assert!(chw.iter().all(|v| (0.0..=1.0).contains(v)));

    let dir = std::env::temp_dir().join(format!("fisao-world-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.png");
    write_png(&path, &s.image).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (size, size));
    assert_eq!(&buf[..info.buffer_size()], &s.image.rgb[..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn contact_sheet_has_the_tiles_and_labels() {
    let world = World::tiny_world().unwrap();
    let samples = world.generate(Split::Train, 0..6, 1);
    let sheet = contact_sheet(&world, &samples, 3, 2);
    let tile = world.config().image_size * 2 + 4;
    assert_eq!(sheet.width, 3 * tile);
    // Tile 4's top-left pixel is sample 4's top-left pixel.
    assert_eq!(
        sheet.pixel(tile + 2, sheet.height / 2 + 2),
        samples[4].image.pixel(0, 0)
    );
    // Label text is drawn in the light label colour under the first tile.
    let label_rows = world.config().image_size * 2 + 6..tile + 20;
    let lit = label_rows
        .flat_map(|y| (0..tile).map(move |x| (x, y)))
        .filter(|&(x, y)| sheet.pixel(x, y) == [235, 235, 235])
        .count();
    assert!(lit > 20, "only {lit} label pixels");
}

/// Regenerates docs/synthetic-world-sheet.png (16 training images of the
/// default world, labelled with their objects; `+name` marks a biased mention): `cargo test -p gpu-train --test world_images -- --ignored`.
#[test]
#[ignore = "writes docs/synthetic-world-sheet.png"]
fn write_docs_contact_sheet() {
    let world = World::default_world().unwrap();
    // Twelve ordinary training images and four whose caption shows the bias.
    let biased = (12..)
        .filter(|&i| {
            world
                .annotate(Split::Train, i, 0)
                .mentions
                .iter()
                .any(|m| m.hallucinated)
        })
        .take(4);
    let samples: Vec<_> = (0..12)
        .chain(biased)
        .map(|i| world.sample(Split::Train, i))
        .collect();
    let sheet = contact_sheet(&world, &samples, 4, 3);
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/synthetic-world-sheet.png");
    write_png(&path, &sheet).unwrap();
    for s in &samples {
        eprintln!("{}", world.ground_truth_line(&s.annotation));
    }
}
