// A matrix product written out: C = A . B + beta C, float32, with shared-memory tiles and register blocking.
//
// Why gpunn has its own: a training step can be captured as a CUDA graph and replayed, and CuPy refuses
// cuBLAS calls while a stream is being captured. The course's formula is the definition
//   C[i, j] = sum_k A[i, k] B[k, j]          A (M, K), B (K, N), C (M, N)
// which can be read the other way round: C is a sum of K outer products, one per K-slice,
//   C = sum_k A[:, k] (x) B[k, :]             (column k of A times row k of B: an M x N rank-1 update)
// and the kernel computes it so. A block of 256 threads owns a 64 x 64 tile of C and streams K through
// shared memory 16 slices at a time: it copies As = A[tile rows, k0:k0+16] and Bs = B[k0:k0+16, tile
// columns] (16 x 64 each, stored K-slice by K-slice), waits for all its threads (__syncthreads), and
// adds the 16 outer products As[k] (x) Bs[k] to the tile. Each value copied from global memory is then
// used 64 times (by every column, or row, of the tile) instead of once: the naive one-thread-per-C-element
// kernel reads 2K floats per output, this one 2K/64.
//
// What each thread holds: thread t = (ty, tx) = (t / 16, t % 16) owns the 4 x 4 elements of the tile at
// rows ty + 16r and columns tx + 16c (r, c = 0..3), in 16 accumulators acc[r][c] that live in registers.
// Per K-slice it reads 4 values of As[k] and 4 of Bs[k] into registers and does 16 multiply-adds: the
// register blocking that makes arithmetic, not shared-memory reads, the bulk of the work. The arrays
// are indexed only by unrolled loops with constant bounds, so they never go to (slow, local) memory
// (ptxas: 0 bytes of stack, see tests/test_kernels_compile.py). Neighbouring threads own neighbouring
// columns: their reads of Bs[k] hit different banks, and their writes to C are coalesced.
//
// Layouts: A[i, k] is at A[i * a_row + k * a_col] and B[k, j] at B[k * b_row + j * b_col] (strides in
// elements), so a transposed view (x.T) needs no copy; C is C-contiguous (row stride N). Elements past
// M, N or K are loaded as zeros and never stored, so any size works. beta is 0 (C = A B: C is never
// read, whatever it holds) or 1 (C += A B). Each C element is one thread's sum over k in increasing
// order, in fp32: no atomics, the same result on every run. Grid: (ceil(N / 64), min(ceil(M / 64),
// 65535)); blocks loop over row tiles (a grid-stride loop in y), since gridDim.y stops at 65535.

#include "activate.cuh"

#define TILE 64     // rows and columns of C per block
#define TILE_K 16   // K-slices per shared-memory tile
#define THREADS 256 // threads per block: a 16 x 16 grid of threads, each owning 4 x 4 elements
#define PER 4       // TILE / 16: rows (and columns) of C per thread
#define PAD 1       // one spare column per shared row, so a column of 16 slices spans 16 banks, not 1

// tile[k][t] = X[(k0 + k) * k_stride + (t0 + t) * t_stride] for the TILE_K x TILE block starting at
// (k0, t0), zeros past K or T. A's tile is (t = row i, k); B's is (t = column j, k). Each of the 256 threads
// copies 4 elements; neighbouring threads take neighbouring addresses (along whichever index has stride 1),
// so the reads of a warp are coalesced for a matrix and for its transpose alike.
__device__ __forceinline__ void load_tile(float (*tile)[TILE + PAD], const float* __restrict__ X, long long k0,
                                          long long t0, long long K, long long T, long long k_stride,
                                          long long t_stride) {
    const bool k_fastest = k_stride == 1 && t_stride != 1;
#pragma unroll
    for (int l = 0; l < TILE * TILE_K / THREADS; ++l) {
        const int e = threadIdx.x + l * THREADS;
        const int k = k_fastest ? e % TILE_K : e / TILE;
        const int t = k_fastest ? e / TILE_K : e % TILE;
        const bool inside = k0 + k < K && t0 + t < T;
        tile[k][t] = inside ? X[(k0 + k) * k_stride + (t0 + t) * t_stride] : 0.0f;
    }
}

// C = A . B tile by tile; store(i, j, value) writes each element of C, inside M x N: what the kernels below
// do with C is theirs (a plain store, an add, the epilogue of a layer).
template <typename Store>
__device__ __forceinline__ void gemm_tiles(const float* __restrict__ A, const float* __restrict__ B, long long M,
                                           long long N, long long K, long long a_row, long long a_col,
                                           long long b_row, long long b_col, Store store) {
    __shared__ float As[TILE_K][TILE + PAD];  // As[k][i] = A[i0 + i, k0 + k]
    __shared__ float Bs[TILE_K][TILE + PAD];  // Bs[k][j] = B[k0 + k, j0 + j]
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const long long j0 = blockIdx.x * (long long)TILE;
    const long long row_tiles = (M + TILE - 1) / TILE;
    // The same trip count for every thread of the block: all of them reach each __syncthreads.
    for (long long tile_row = blockIdx.y; tile_row < row_tiles; tile_row += gridDim.y) {
        const long long i0 = tile_row * TILE;
        float acc[PER][PER];
#pragma unroll
        for (int r = 0; r < PER; ++r)
#pragma unroll
            for (int c = 0; c < PER; ++c) acc[r][c] = 0.0f;
        for (long long k0 = 0; k0 < K; k0 += TILE_K) {
            load_tile(As, A, k0, i0, K, M, a_col, a_row);
            load_tile(Bs, B, k0, j0, K, N, b_row, b_col);
            __syncthreads();  // the tiles are complete
#pragma unroll
            for (int k = 0; k < TILE_K; ++k) {  // one outer product As[k] (x) Bs[k], on this thread's 4 x 4
                float a[PER], b[PER];
#pragma unroll
                for (int r = 0; r < PER; ++r) a[r] = As[k][ty + 16 * r];
#pragma unroll
                for (int c = 0; c < PER; ++c) b[c] = Bs[k][tx + 16 * c];
#pragma unroll
                for (int r = 0; r < PER; ++r)
#pragma unroll
                    for (int c = 0; c < PER; ++c) acc[r][c] = fmaf(a[r], b[c], acc[r][c]);
            }
            __syncthreads();  // everyone is done with the tiles before they are overwritten
        }
#pragma unroll
        for (int r = 0; r < PER; ++r) {
            const long long i = i0 + ty + 16 * r;
#pragma unroll
            for (int c = 0; c < PER; ++c) {
                const long long j = j0 + tx + 16 * c;
                if (i < M && j < N) store(i, j, acc[r][c]);
            }
        }
    }
}

extern "C" {

__global__ void sgemm(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, long long M,
                      long long N, long long K, long long a_row, long long a_col, long long b_row, long long b_col,
                      float beta) {
    gemm_tiles(A, B, M, N, K, a_row, a_col, b_row, b_col, [&](long long i, long long j, float v) {
        C[i * N + j] = beta != 0.0f ? v + beta * C[i * N + j] : v;
    });
}

// A layer's forward in one launch, the product and its epilogue (epilogue.cu's conv_bias_act_forward):
//   out[n, f, p] = g(C[f, n*P + p] + bias[f])      C = A . B (M = F rows, N = images * P columns)
// Conv2D's A = g(W2 . col + b) in its (images, F, P) layout; Dense's, with P = 1, from W^T . x^T.
__global__ void sgemm_bias_act(const float* __restrict__ A, const float* __restrict__ B,
                               const float* __restrict__ bias, int has_bias, float* __restrict__ out, long long M,
                               long long N, long long K, long long a_row, long long a_col, long long b_row,
                               long long b_col, long long P, int activation) {
    gemm_tiles(A, B, M, N, K, a_row, a_col, b_row, b_col, [&](long long i, long long j, float v) {
        out[((j / P) * M + i) * P + j % P] = activate(v + (has_bias ? bias[i] : 0.0f), activation);
    });
}
}
