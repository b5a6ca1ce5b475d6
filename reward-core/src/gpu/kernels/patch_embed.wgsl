// im2col for the bias-free patch convolution (stride = kernel = P):
// patches[n * G * G, width] from pixels[n, C, S, S], patch rows in
// row-major grid order, columns in the (channel, row, column) order of the
// conv weight, so that `patches @ weight^T` is the convolution. The pixels
// are f32 at either precision: the conversion to T happens here, on the GPU.
struct Params {
    count: u32,
    channels: u32,
    size: u32,
    psize: u32,
    grid: u32,
    groups_x: u32,
    width: u32, // row width: C * P * P values, then zeros (see PatchShape::row_width)
    _pad0: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<f32>;
@group(0) @binding(1) var<storage, read_write> patches: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * p.groups_x * WG;
    if (i >= p.count) {
        return;
    }
    let row = i / p.width;
    let col = i % p.width;
    if (col >= p.channels * p.psize * p.psize) {
        patches[i] = T(0.0);
        return;
    }
    let per_image = p.grid * p.grid;
    let image = row / per_image;
    let cell = row % per_image;
    let gy = cell / p.grid;
    let gx = cell % p.grid;
    let ch = col / (p.psize * p.psize);
    let ky = (col / p.psize) % p.psize;
    let kx = col % p.psize;
    let plane = p.size * p.size;
    let src = image * p.channels * plane + ch * plane + (gy * p.psize + ky) * p.size + gx * p.psize + kx;
    patches[i] = T(pixels[src]);
}
