// 3x3 convolution of an 8-bit grayscale image (OpenCL C 1.2).
//
// The image is width * height bytes, row-major, one byte per pixel. One
// work item computes one output pixel: x = get_global_id(0) (column),
// y = get_global_id(1) (row). Filters (parameter `filter`):
//
//   0 blur     [1 2 1; 2 4 2; 1 2 1]           (sum + 8) / 16
//   1 sharpen  [0 -1 0; -1 5 -1; 0 -1 0]       sum
//   2 edges    [-1 -1 -1; -1 8 -1; -1 -1 -1]   sum
//
// Integer arithmetic, results clamped to 0..255, pixels outside the image
// read as the nearest edge pixel (clamp-to-edge). The output is the same,
// byte for byte, as the wasm implementation's (src/main.rs) for these
// filters. The platform refuses other values before the kernel runs
// (`require` in ip.toml); this kernel still copies the input for them (the wasm
// implementation refuses it with an error instead: a kernel cannot fail a
// call).
//
// ip.toml launches width x height work items rounded UP to the 16 x 16
// work-group size, so work items outside the image must do nothing.

__kernel void convolve3x3(__global const uchar *input,
                          __global uchar *output,
                          uint width,
                          uint height,
                          uint filter)
{
    const uint x = (uint)get_global_id(0);
    const uint y = (uint)get_global_id(1);
    if (x >= width || y >= height) return;  // padding of the last groups

    // Clamp-to-edge neighbours. Offsets are size_t: width * height may
    // exceed 2^32 - 1.
    const size_t xl = x > 0 ? x - 1 : 0;
    const size_t xr = x + 1 < width ? x + 1 : x;
    const size_t up = (size_t)(y > 0 ? y - 1 : 0) * width;
    const size_t mid = (size_t)y * width;
    const size_t dn = (size_t)(y + 1 < height ? y + 1 : y) * width;

    const int nw = input[up + xl], n = input[up + x], ne = input[up + xr];
    const int w = input[mid + xl], c = input[mid + x], e = input[mid + xr];
    const int sw = input[dn + xl], s = input[dn + x], se = input[dn + xr];

    int v;
    switch (filter) {
    case 0:  // blur; the sum is never negative, so / rounds half up
        v = (nw + 2 * n + ne + 2 * w + 4 * c + 2 * e + sw + 2 * s + se + 8) / 16;
        break;
    case 1:  // sharpen
        v = 5 * c - n - w - e - s;
        break;
    case 2:  // edges (Laplacian)
        v = 8 * c - (nw + n + ne + w + e + sw + s + se);
        break;
    default:  // unknown filter: a defined result, the input unchanged
        v = c;
        break;
    }
    output[mid + x] = (uchar)clamp(v, 0, 255);
}
