//! How the generated tensor-core kernels (`matmul_coop.rs`,
//! `attention_flash.rs`) spell their 16 x 16 x 16 matrix operations: as
//! WGSL cooperative matrices (`wgpu_cooperative_matrix`, what a device with
//! tensor cores runs), or written out in plain WGSL ([`CoopDialect::Emulated`]).
//!
//! The emulation exists so the generated kernels' own logic (tile offsets,
//! staging, barriers, epilogue, masking) runs on any device, lavapipe in CI
//! included: a kernel is generated once per dialect from the same code, and
//! only the matrix operations below differ. It follows the semantics of
//! `coopLoad` (column-major: element (r, c) at `c * stride + r`), `coopLoadT`
//! (row-major: `r * stride + c`), `coopStoreT` and `coopMultiplyAdd`
//! (f16 operands, products and sums in f32) with the 32 invocations of a
//! "subgroup" (`sg = t / 32`, `lane = t % 32`) sharing each matrix:
//! lane `l` keeps row `l / 2` of an A operand, columns `8 (l % 2) ..+ 8`
//! of every row of a B operand, and those 8 elements of its row of an
//! accumulator. Slow (private arrays, scalar loops); for tests only.

use alloc::format;
use alloc::string::String;

/// The operand a matrix plays in `c = a * b + c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Left operand, `m x k`.
    A,
    /// Right operand, `k x n`.
    B,
    /// Accumulator and result, `m x n` (f32).
    C,
}

impl Role {
    fn letter(self) -> &'static str {
        match self {
            Role::A => "A",
            Role::B => "B",
            Role::C => "C",
        }
    }
}

/// Cooperative matrices as the device has them, or emulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoopDialect {
    /// `coop_mat16x16` values and built-ins (tensor cores).
    Hardware,
    /// Per-invocation arrays and loops in plain WGSL (any device).
    Emulated,
}

/// The entry point of the hardware kernels: invocation, workgroup,
/// subgroup and lane ids (the kernels assume subgroups of exactly 32).
const HARDWARE_MAIN: &str = "\n@compute @workgroup_size(WG, 1, 1)\nfn main(\n    \
    @builtin(local_invocation_index) t: u32,\n    \
    @builtin(workgroup_id) wid: vec3<u32>,\n    \
    @builtin(subgroup_id) sg: u32,\n    \
    @builtin(subgroup_invocation_id) lane: u32,\n) {\n";

/// The emulated entry point: the same names, "subgroups" of 32 by index.
const EMULATED_MAIN: &str = "\n@compute @workgroup_size(WG, 1, 1)\nfn main(\n    \
    @builtin(local_invocation_index) t: u32,\n    \
    @builtin(workgroup_id) wid: vec3<u32>,\n) {\n    \
    let sg = t / 32u;\n    let lane = t % 32u;\n";

/// The emulated multiply-add (one lane's 8 accumulator elements).
const EMULATED_MMA: &str = r#"
fn emu_mma(a: array<f32, 16>, b: array<f32, 128>, c: array<f32, 8>) -> array<f32, 8> {
    var av = a;
    var bv = b;
    var o = c;
    for (var j = 0u; j < 8u; j++) {
        var s = o[j];
        for (var k = 0u; k < 16u; k++) {
            s += av[k] * bv[k * 8u + j];
        }
        o[j] = s;
    }
    return o;
}
"#;

impl CoopDialect {
    /// The `enable` line the kernel needs (none when emulated).
    pub(crate) fn header(self) -> &'static str {
        match self {
            CoopDialect::Hardware => "enable wgpu_cooperative_matrix;\n",
            CoopDialect::Emulated => "",
        }
    }

    /// The entry point's signature; `t`, `wid`, `sg` and `lane` are in scope
    /// after it.
    pub(crate) fn main(self) -> &'static str {
        match self {
            CoopDialect::Hardware => HARDWARE_MAIN,
            CoopDialect::Emulated => EMULATED_MAIN,
        }
    }

    /// The barrier between a subgroup's epilogue stores and its lanes'
    /// reads (`subgroup`: [`super::matmul_coop::CoopTile::subgroup_epilogue`]).
    /// Emulated "subgroups" are 32 invocations by index, possibly several
    /// real subgroups, so they always meet at a workgroup barrier.
    pub(crate) fn epilogue_barrier(self, subgroup: bool) -> &'static str {
        match (self, subgroup) {
            (CoopDialect::Hardware, true) => "subgroupBarrier();",
            _ => "workgroupBarrier();",
        }
    }

    /// The type of an f32 accumulator (for function parameters).
    pub(crate) fn acc_type(self) -> &'static str {
        match self {
            CoopDialect::Hardware => "coop_mat16x16<f32, C>",
            CoopDialect::Emulated => "array<f32, 8>",
        }
    }

    /// An expression: a zero accumulator.
    pub(crate) fn zero(self) -> String {
        format!("{}()", self.acc_type())
    }

    /// An expression: the 16 x 16 `role` matrix at `array[offset]`, rows
    /// `stride` apart when `row_major`, else columns. A and B read f16
    /// arrays, C an f32 one.
    pub(crate) fn load(
        self,
        role: Role,
        row_major: bool,
        array: &str,
        offset: &str,
        stride: &str,
    ) -> String {
        let t = if row_major { "T" } else { "" };
        match self {
            CoopDialect::Hardware => {
                let elem = if role == Role::C { "f32" } else { "f16" };
                let r = role.letter();
                format!("coopLoad{t}<coop_mat16x16<{elem}, {r}>>(&{array}[{offset}], {stride})")
            }
            CoopDialect::Emulated => format!(
                "emu_load_{}{t}_{array}({offset}, {stride}, lane)",
                role.letter()
            ),
        }
    }

    /// A statement: stores accumulator `m` row-major at `array[offset]`
    /// (an f32 array), rows `stride` apart.
    pub(crate) fn store(self, m: &str, array: &str, offset: &str, stride: &str) -> String {
        match self {
            CoopDialect::Hardware => format!("coopStoreT({m}, &{array}[{offset}], {stride});"),
            CoopDialect::Emulated => format!("emu_storeT_{array}({m}, {offset}, {stride}, lane);"),
        }
    }

    /// An expression: `a * b + c`.
    pub(crate) fn mma(self, a: &str, b: &str, c: &str) -> String {
        match self {
            CoopDialect::Hardware => format!("coopMultiplyAdd({a}, {b}, {c})"),
            CoopDialect::Emulated => format!("emu_mma({a}, {b}, {c})"),
        }
    }

    /// The emulation's functions for the workgroup arrays the kernel reads
    /// matrices from (`operands`: f16, or `vec4<f16>` when `packed`, whose
    /// loads then take their offset and stride in vec4s as the hardware load
    /// does from a vector array) and keeps accumulators in (`accumulators`,
    /// f32); nothing on hardware.
    pub(crate) fn helpers(self, operands: &[&str], packed: bool, accumulators: &[&str]) -> String {
        let mut s = String::new();
        if self == CoopDialect::Hardware {
            return s;
        }
        s.push_str(EMULATED_MMA);
        for array in operands {
            for row_major in [false, true] {
                s.push_str(&emulated_load(array, Role::A, row_major, packed));
                s.push_str(&emulated_load(array, Role::B, row_major, packed));
            }
        }
        for array in accumulators {
            s.push_str(&emulated_load(array, Role::C, true, false));
            s.push_str(&format!(
                "\nfn emu_storeT_{array}(m: array<f32, 8>, off: u32, ld: u32, lane: u32) {{\n    \
                 var v = m;\n    let r = lane / 2u;\n    let c0 = (lane % 2u) * 8u;\n    \
                 for (var j = 0u; j < 8u; j++) {{\n        {array}[off + r * ld + c0 + j] = v[j];\n    \
                 }}\n}}\n"
            ));
        }
        s
    }
}

/// One emulated load function: `emu_load_<role>[T]_<array>`. On a
/// `packed` array (`vec4<f16>` elements) the offset and stride count
/// vec4s, as a cooperative load from a vector array does, and the matrix
/// reads the halves in memory order.
fn emulated_load(array: &str, role: Role, row_major: bool, packed: bool) -> String {
    let t = if row_major { "T" } else { "" };
    // Element (r, c) of the matrix: `array` at half `e`, which a packed
    // array holds as component e % 4 of vec4 e / 4.
    let at = |r: &str, c: &str| {
        let e = match row_major {
            true => format!("off + ({r}) * ld + {c}"),
            false => format!("off + ({c}) * ld + {r}"),
        };
        match packed {
            false => format!("{array}[{e}]"),
            true => format!("{array}[({e}) / 4u][({e}) % 4u]"),
        }
    };
    let (len, body) = match role {
        Role::A => (
            16,
            format!(
                "    for (var k = 0u; k < 16u; k++) {{\n        m[k] = f32({});\n    }}\n",
                at("lane / 2u", "k")
            ),
        ),
        Role::B => (
            128,
            format!(
                "    for (var k = 0u; k < 16u; k++) {{\n        for (var j = 0u; j < 8u; j++) {{\n            \
                 m[k * 8u + j] = f32({});\n        }}\n    }}\n",
                at("k", "(lane % 2u) * 8u + j")
            ),
        ),
        Role::C => (
            8,
            format!(
                "    for (var j = 0u; j < 8u; j++) {{\n        m[j] = f32({});\n    }}\n",
                at("lane / 2u", "(lane % 2u) * 8u + j")
            ),
        ),
    };
    // A packed array's offset and stride arrive in vec4s; the body counts halves.
    let (params, scale) = match packed {
        false => ("off: u32, ld: u32", ""),
        true => (
            "off4: u32, ld4: u32",
            "    let off = off4 * 4u;\n    let ld = ld4 * 4u;\n",
        ),
    };
    format!(
        "\nfn emu_load_{}{t}_{array}({params}, lane: u32) -> array<f32, {len}> {{\n{scale}    \
         var m: array<f32, {len}>;\n{body}    return m;\n}}\n",
        role.letter()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_dialects_spell_the_same_operations() {
        let hw = CoopDialect::Hardware;
        assert_eq!(
            hw.load(Role::A, true, "sa", "x", "LDS"),
            "coopLoadT<coop_mat16x16<f16, A>>(&sa[x], LDS)"
        );
        assert_eq!(
            hw.load(Role::C, true, "ss", "0u", "LF"),
            "coopLoadT<coop_mat16x16<f32, C>>(&ss[0u], LF)"
        );
        let emu = CoopDialect::Emulated;
        assert_eq!(
            emu.load(Role::B, false, "sb", "x", "LDS"),
            "emu_load_B_sb(x, LDS, lane)"
        );
        assert_eq!(
            emu.store("c", "sc", "0u", "16u"),
            "emu_storeT_sc(c, 0u, 16u, lane);"
        );
        assert!(hw.helpers(&["sa"], false, &["sc"]).is_empty());
        let helpers = emu.helpers(&["sa"], false, &["sc"]);
        for f in [
            "fn emu_mma(",
            "fn emu_load_A_sa(",
            "fn emu_load_AT_sa(",
            "fn emu_load_B_sa(",
            "fn emu_load_BT_sa(",
            "fn emu_load_CT_sc(",
            "fn emu_storeT_sc(",
        ] {
            assert!(helpers.contains(f), "{f} missing");
        }
    }
}
