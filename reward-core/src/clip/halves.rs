//! Whole-slice conversions between f32 and 16-bit floats, through the
//! `half` crate's slice methods, which use the CPU's conversion
//! instructions where it has them (F16C on x86-64): several times faster
//! than converting one value at a time, which dominated loading f16
//! checkpoints and uploading f32 weights to an f16 device. Same values:
//! both round to nearest even.

use alloc::vec::Vec;

use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use half::{bf16, f16};

/// Words per conversion step: a stack buffer, so that no second copy of a
/// large tensor is allocated (its page faults cost more than the vector
/// conversion saves).
const STEP: usize = 2048;

/// Little-endian 16-bit words (as bytes) into f32 through `convert`, a
/// step at a time.
fn widen(bytes: &[u8], convert: impl Fn(&[u16], &mut [f32])) -> Vec<f32> {
    let n = bytes.len() / 2;
    let mut out = alloc::vec![0.0f32; n];
    let mut words = [0u16; STEP];
    for (src, dst) in bytes.chunks(2 * STEP).zip(out.chunks_mut(STEP)) {
        let w = &mut words[..dst.len()];
        for (x, b) in w.iter_mut().zip(src.chunks_exact(2)) {
            *x = u16::from_le_bytes([b[0], b[1]]);
        }
        convert(w, dst);
    }
    out
}

/// Little-endian f16 bytes as f32 values (a trailing odd byte is ignored).
pub(crate) fn f16_to_f32(bytes: &[u8]) -> Vec<f32> {
    widen(bytes, |w, d| {
        w.reinterpret_cast::<f16>().convert_to_f32_slice(d)
    })
}

/// Little-endian bf16 bytes as f32 values (a trailing odd byte is ignored).
pub(crate) fn bf16_to_f32(bytes: &[u8]) -> Vec<f32> {
    widen(bytes, |w, d| {
        w.reinterpret_cast::<bf16>().convert_to_f32_slice(d)
    })
}

/// f32 values rounded to f16, as little-endian bytes.
#[cfg(feature = "gpu")]
pub(crate) fn f32_to_f16(values: &[f32]) -> Vec<u8> {
    let mut out = alloc::vec![0u8; 2 * values.len()];
    let mut halves = [f16::ZERO; STEP];
    for (src, dst) in values.chunks(STEP).zip(out.chunks_mut(2 * STEP)) {
        let h = &mut halves[..src.len()];
        h.convert_from_f32_slice(src);
        for (b, x) in dst.chunks_exact_mut(2).zip(h.iter()) {
            b.copy_from_slice(&x.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that exercise rounding, subnormals, overflow and signs.
    fn samples() -> Vec<f32> {
        let mut v: Vec<f32> = (0..4096)
            .map(|i| ((i as f32) * 0.7311).sin() * 10f32.powi(i % 13 - 8))
            .collect();
        v.extend([
            0.0,
            -0.0,
            1.0,
            65504.0,
            65520.0,
            1e9,
            -1e9,
            6e-8,
            3e-8,
            1.000_488_3,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]);
        v
    }

    #[test]
    fn slices_convert_as_single_values_do() {
        let v = samples();
        let one_by_one: Vec<u8> = v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_le_bytes())
            .collect();
        #[cfg(feature = "gpu")]
        assert_eq!(f32_to_f16(&v), one_by_one);
        let back: Vec<f32> = one_by_one
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(f16_to_f32(&one_by_one), back);
        let b16: Vec<u8> = v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
            .collect();
        let back16: Vec<f32> = b16
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        assert_eq!(bf16_to_f32(&b16), back16);
    }
}
