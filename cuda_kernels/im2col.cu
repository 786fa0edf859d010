// im2col / col2im: turning a convolution into one matrix product.
//
// Layouts (all row-major, channels-first):
//   x   : (N, C, H, W)                      the input images
//   col : (C*KH*KW, N*OH*OW)                one column per output pixel of every image,
//                                           holding the KH x KW x C patch it sees
// so that the whole batch is one product:  W.reshape(F, C*KH*KW) @ col  -> (F, N*OH*OW).
//
// Geometry: output pixel (oh, ow), kernel tap (ki, kj) reads input pixel
//   h = oh*SH - PT + ki*DH,   w = ow*SW - PL + kj*DW
// (PT, PL: padding at the top and left; DH, DW: dilation). Taps that fall in the
// padding read `fill` (0 for convolution and average pooling, -inf for max pooling).
//
// Indices are 64-bit: C*KH*KW*N*OH*OW passes 2^31 for large batches.
// Each function is instantiated for float (training) and double (gradient checks).

template <typename T>
__device__ void im2col(const T* __restrict__ x, T* __restrict__ col,
                       long long N, long long C, long long H, long long W,
                       int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
                       long long OH, long long OW, T fill) {
    // One thread per element of col, row (c, ki, kj), column (n, oh, ow). Consecutive
    // threads take consecutive output pixels (ow fastest), so both the reads of x
    // and the writes of col are coalesced.
    const long long total = C * KH * KW * N * OH * OW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long ow = i % OW;
        const long long oh = (i / OW) % OH;
        const long long n = (i / (OW * OH)) % N;
        const long long kj = (i / (OW * OH * N)) % KW;
        const long long ki = (i / (OW * OH * N * KW)) % KH;
        const long long c = i / (OW * OH * N * KW * KH);
        const long long h = oh * SH - PT + ki * DH;
        const long long w = ow * SW - PL + kj * DW;
        col[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[((n * C + c) * H + h) * W + w] : fill;
    }
}

template <typename T>
__device__ void col2im(const T* __restrict__ col, T* __restrict__ dx,
                       long long N, long long C, long long H, long long W,
                       int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,
                       long long OH, long long OW) {
    // The adjoint of im2col, as a gather: one thread per input pixel (n, c, h, w)
    // sums every column entry that read it. Tap (ki, kj) read it from output pixel
    //   oh = (h + PT - ki*DH) / SH   when that division is exact and 0 <= oh < OH
    // (and the same for ow). No atomics, so the sum is in a fixed order: the same
    // bits on every run.
    const long long total = N * C * H * W;
    const long long pixels = N * OH * OW;  // the length of one row of col
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long w = i % W;
        const long long h = (i / W) % H;
        const long long c = (i / (W * H)) % C;
        const long long n = i / (W * H * C);
        T sum = 0;
        for (int ki = 0; ki < KH; ++ki) {
            const long long hh = h + PT - (long long)ki * DH;
            if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
            const long long oh = hh / SH;
            for (int kj = 0; kj < KW; ++kj) {
                const long long ww = w + PL - (long long)kj * DW;
                if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
                const long long ow = ww / SW;
                const long long row = (c * KH + ki) * KW + kj;
                sum += col[row * pixels + (n * OH + oh) * OW + ow];
            }
        }
        dx[i] = sum;
    }
}

#define IM2COL_ARGS(T)                                                                    \
    const T *__restrict__ x, T *__restrict__ col, long long N, long long C, long long H,  \
        long long W, int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,      \
        long long OH, long long OW, T fill
#define COL2IM_ARGS(T)                                                                    \
    const T *__restrict__ col, T *__restrict__ dx, long long N, long long C, long long H, \
        long long W, int KH, int KW, int SH, int SW, int PT, int PL, int DH, int DW,      \
        long long OH, long long OW

extern "C" {
__global__ void im2col_forward_float(IM2COL_ARGS(float)) {
    im2col<float>(x, col, N, C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW, fill);
}
__global__ void im2col_forward_double(IM2COL_ARGS(double)) {
    im2col<double>(x, col, N, C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW, fill);
}
__global__ void col2im_backward_float(COL2IM_ARGS(float)) {
    col2im<float>(col, dx, N, C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW);
}
__global__ void col2im_backward_double(COL2IM_ARGS(double)) {
    col2im<double>(col, dx, N, C, H, W, KH, KW, SH, SW, PT, PL, DH, DW, OH, OW);
}
}
