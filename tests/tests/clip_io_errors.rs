//! Bad image input gives a clear error, never a panic: a non-image, a
//! decompression bomb (header dimensions over the pixel limit, refused
//! before any pixel buffer is allocated), a truncated file, an unsupported
//! format, a missing file.

use fisao_tests::fixtures_dir;
use reward_core::clip::ClipError;
use reward_core::clip::image::{ImageLimits, decode_image, load_image};

/// A PNG whose header claims `w x h` pixels, with one tiny IDAT chunk.
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, tag: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(tag);
        out.extend(data);
        out.extend(crc32(&out[start..]).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut out, b"IEND", &[]);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn decompression_bomb_is_refused_from_the_header() {
    let bomb = png_header_only(100_000, 100_000);
    let err = decode_image(&bomb, "bomb.png", &ImageLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            ClipError::ImageTooLarge {
                width: 100_000,
                height: 100_000,
                ..
            }
        ),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("bomb.png") && msg.contains("image too large: 100000x100000 exceeds"),
        "{msg}"
    );
    // A tighter limit applies to ordinary sizes too.
    let small = ImageLimits {
        max_pixels: 100,
        ..ImageLimits::default()
    };
    let photo = std::fs::read(fixtures_dir().join("images/chelsea.png")).unwrap();
    let msg = decode_image(&photo, "chelsea.png", &small)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("451x300 exceeds the limit of 100 pixels"),
        "{msg}"
    );
}

#[test]
fn non_image_is_a_clear_error() {
    let path = fixtures_dir().join("clip/pixels_inputs/not_an_image.png");
    let msg = load_image(&path, &ImageLimits::default())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("not_an_image.png") && msg.contains("not a PNG, JPEG or WebP"),
        "{msg}"
    );
    let msg = decode_image(b"", "empty", &ImageLimits::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("empty"), "{msg}");
}

#[test]
fn truncated_and_unsupported_files_are_errors() {
    let photo = std::fs::read(fixtures_dir().join("images/coffee.png")).unwrap();
    let msg = decode_image(
        &photo[..photo.len() / 2],
        "coffee-half.png",
        &ImageLimits::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("coffee-half.png: cannot decode image"),
        "{msg}"
    );
    let jpeg = std::fs::read(fixtures_dir().join("images/rocket.jpg")).unwrap();
    assert!(decode_image(&jpeg[..200], "rocket-cut.jpg", &ImageLimits::default()).is_err());
    let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
    let msg = decode_image(gif, "x.gif", &ImageLimits::default())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("x.gif") && msg.contains("Gif"), "{msg}");
}

#[test]
fn missing_file_names_the_path() {
    let path = fixtures_dir().join("images/no-such-image.png");
    let err = load_image(&path, &ImageLimits::default()).unwrap_err();
    assert!(matches!(err, ClipError::Io { .. }));
    let msg = err.to_string();
    assert!(msg.contains("no-such-image.png"), "{msg}");
}
