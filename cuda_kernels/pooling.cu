// Max and average pooling, read straight from the images: one launch forward, one backward.
//
// Layouts (row-major, channels-first; each of the N*C channels is pooled on its own, so the
// kernels see P = N*C one-channel planes):
//   x, dx  : (P, H, W)        the input and its gradient
//   y, dy  : (P, OH, OW)      the output and its gradient
//   arg    : (P, OH, OW) int  max pooling: which tap of its window won, k = ki*KW + kj
//
// Geometry: output pixel (oh, ow), window tap (ki, kj) reads input pixel
//   h = oh*SH - PT + ki,   w = ow*SW - PL + kj
// (PT, PL: padding at the top and left). Taps that fall in the padding are skipped: padding
// never wins a max and never counts in a mean.
//
// Backward is a gather, as in col2im: one thread per INPUT pixel sums what every window
// covering it sends it. No atomics, so overlapping windows (stride < pool size) are summed in
// a fixed order: the same bits on every run.
//
// Indices are 64-bit: P*H*W passes 2^31 for large batches.
// Each function is instantiated for float (training) and double (gradient checks).

template <typename T>
__device__ void max_pool_forward(const T* __restrict__ x, T* __restrict__ y, int* __restrict__ arg,
                                 long long P, long long H, long long W, int KH, int KW, int SH, int SW,
                                 int PT, int PL, long long OH, long long OW) {
    // One thread per output pixel (p, oh, ow):
    //   y = max over the window's real pixels,  arg = the tap of the first one reaching it
    // in reading order (ties go to the first). A NaN wins, as in NumPy's max, so a network
    // that diverged shows NaN instead of hiding it.
    const long long total = P * OH * OW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long ow = i % OW;
        const long long oh = (i / OW) % OH;
        const long long p = i / (OW * OH);
        const T* plane = x + p * H * W;
        T best = 0;
        int won = -1;  // no real pixel seen yet
        for (int ki = 0; ki < KH; ++ki) {
            const long long h = oh * SH - PT + ki;
            if (h < 0 || h >= H) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const long long w = ow * SW - PL + kj;
                if (w < 0 || w >= W) continue;
                const T v = plane[h * W + w];
                if (won < 0 || v > best || (v != v && best == best)) {
                    best = v;
                    won = ki * KW + kj;
                }
            }
        }
        y[i] = best;
        arg[i] = won;
    }
}

// Calls visit(oh, ow, tap) for every window (oh, ow) that covers input pixel (h, w), where it is tap
// ki*KW + kj: oh = (h + PT - ki) / SH when that division is exact and 0 <= oh < OH (the same for ow).
template <typename Visit>
__device__ __forceinline__ void windows_covering(long long h, long long w, int KH, int KW, int SH, int SW, int PT,
                                                 int PL, long long OH, long long OW, Visit visit) {
    for (int ki = 0; ki < KH; ++ki) {
        const long long hh = h + PT - ki;
        if (hh < 0 || hh % SH != 0 || hh / SH >= OH) continue;
        for (int kj = 0; kj < KW; ++kj) {
            const long long ww = w + PL - kj;
            if (ww < 0 || ww % SW != 0 || ww / SW >= OW) continue;
            visit(hh / SH, ww / SW, ki * KW + kj);
        }
    }
}

template <typename T>
__device__ void max_pool_backward(const T* __restrict__ dy, const int* __restrict__ arg, T* __restrict__ dx,
                                  long long P, long long H, long long W, int KH, int KW, int SH, int SW,
                                  int PT, int PL, long long OH, long long OW) {
    // One thread per input pixel (p, h, w):
    //   dx = sum of dy over the windows that cover it and whose arg-max it is.
    const long long total = P * H * W;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long w = i % W;
        const long long h = (i / W) % H;
        const long long p = i / (W * H);
        T sum = 0;
        windows_covering(h, w, KH, KW, SH, SW, PT, PL, OH, OW, [&](long long oh, long long ow, int tap) {
            const long long o = (p * OH + oh) * OW + ow;
            if (arg[o] == tap) sum += dy[o];
        });
        dx[i] = sum;
    }
}

__device__ inline long long real_pixels(long long o, int S, int P, int K, long long size) {
    // How many of the K pixels of window o along one axis fall inside the image.
    const long long first = o * S - P;
    const long long begin = first < 0 ? 0 : first;
    const long long end = first + K > size ? size : first + K;
    return end - begin;
}

template <typename T>
__device__ void avg_pool_forward(const T* __restrict__ x, T* __restrict__ y,
                                 long long P, long long H, long long W, int KH, int KW, int SH, int SW,
                                 int PT, int PL, long long OH, long long OW) {
    // One thread per output pixel (p, oh, ow):  y = (sum of the window's real pixels) / their count
    // (with 'valid' padding every window is real: count = KH*KW).
    const long long total = P * OH * OW;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long ow = i % OW;
        const long long oh = (i / OW) % OH;
        const long long p = i / (OW * OH);
        const T* plane = x + p * H * W;
        T sum = 0;
        for (int ki = 0; ki < KH; ++ki) {
            const long long h = oh * SH - PT + ki;
            if (h < 0 || h >= H) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const long long w = ow * SW - PL + kj;
                if (w >= 0 && w < W) sum += plane[h * W + w];
            }
        }
        y[i] = sum / (T)(real_pixels(oh, SH, PT, KH, H) * real_pixels(ow, SW, PL, KW, W));
    }
}

template <typename T>
__device__ void avg_pool_backward(const T* __restrict__ dy, T* __restrict__ dx,
                                  long long P, long long H, long long W, int KH, int KW, int SH, int SW,
                                  int PT, int PL, long long OH, long long OW) {
    // One thread per input pixel (p, h, w):  dx = sum over the windows covering it of dy / count.
    const long long total = P * H * W;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long w = i % W;
        const long long h = (i / W) % H;
        const long long p = i / (W * H);
        T sum = 0;
        windows_covering(h, w, KH, KW, SH, SW, PT, PL, OH, OW, [&](long long oh, long long ow, int) {
            const T count = (T)(real_pixels(oh, SH, PT, KH, H) * real_pixels(ow, SW, PL, KW, W));
            sum += dy[(p * OH + oh) * OW + ow] / count;
        });
        dx[i] = sum;
    }
}

#define POOL_GEOMETRY                                                                      \
    long long P, long long H, long long W, int KH, int KW, int SH, int SW, int PT, int PL, \
        long long OH, long long OW
#define POOL_ARGS P, H, W, KH, KW, SH, SW, PT, PL, OH, OW

extern "C" {
__global__ void max_pool_forward_float(const float* __restrict__ x, float* __restrict__ y,
                                       int* __restrict__ arg, POOL_GEOMETRY) {
    max_pool_forward<float>(x, y, arg, POOL_ARGS);
}
__global__ void max_pool_forward_double(const double* __restrict__ x, double* __restrict__ y,
                                        int* __restrict__ arg, POOL_GEOMETRY) {
    max_pool_forward<double>(x, y, arg, POOL_ARGS);
}
__global__ void max_pool_backward_float(const float* __restrict__ dy, const int* __restrict__ arg,
                                        float* __restrict__ dx, POOL_GEOMETRY) {
    max_pool_backward<float>(dy, arg, dx, POOL_ARGS);
}
__global__ void max_pool_backward_double(const double* __restrict__ dy, const int* __restrict__ arg,
                                         double* __restrict__ dx, POOL_GEOMETRY) {
    max_pool_backward<double>(dy, arg, dx, POOL_ARGS);
}
__global__ void avg_pool_forward_float(const float* __restrict__ x, float* __restrict__ y, POOL_GEOMETRY) {
    avg_pool_forward<float>(x, y, POOL_ARGS);
}
__global__ void avg_pool_forward_double(const double* __restrict__ x, double* __restrict__ y, POOL_GEOMETRY) {
    avg_pool_forward<double>(x, y, POOL_ARGS);
}
__global__ void avg_pool_backward_float(const float* __restrict__ dy, float* __restrict__ dx, POOL_GEOMETRY) {
    avg_pool_backward<float>(dy, dx, POOL_ARGS);
}
__global__ void avg_pool_backward_double(const double* __restrict__ dy, double* __restrict__ dx, POOL_GEOMETRY) {
    avg_pool_backward<double>(dy, dx, POOL_ARGS);
}
}
