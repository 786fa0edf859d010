// Scaled dot-product attention, fused: softmax(Q K^T * scale) V without an L x L buffer.
//
// Layout: q (B, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv), row-major; out (B, H, Lq, dv);
// lse (B, H, Lq); mask (B, Lk) int8, 1 = key may be attended (read only when has_mask).
// Grid: one dimension, B*H groups of blocks; block x works on (b, h) = divmod(x / per_bh, H)
// (per_bh = gridDim.x / (B*H) row blocks each), so all threads of a block share one (b, h)
// and can load tiles of K and V (or Q and dOut) into shared memory together. (The x
// dimension takes 2^31 - 1 blocks; y and z stop at 65535, too few for B*H in evaluation.)
//
// Forward, one query row i per group of G threads, keys streamed in tiles of TILE with an online softmax:
//     m = running max of the scores s_ij seen so far, l = sum_j exp(s_ij - m),
//     acc = sum_j exp(s_ij - m) v_j;  a larger score s rescales l and acc by exp(m - s).
//     out_i = acc / l,  lse_i = m + log(l);  a row with no allowed key: out_i = 0, lse_i = +inf.
// Backward (with D_i = sum_c dout_ic out_ic, computed beforehand), p_ij = exp(s_ij - lse_i):
//     dq_i = scale * sum_j p_ij (dout_i . v_j - D_i) k_j            one group per query row
//     dv_j = sum_i p_ij dout_i;  dk_j = scale * sum_i p_ij (dout_i . v_j - D_i) q_i   one group per key row
// Causal: key j is allowed for query i when j <= i, and tiles entirely above the diagonal are not visited.
//
// Registers, not memory: each kernel is a template on the padded head width D (32, 64 or 128, the
// smallest that holds both d and dv; the columns past d or dv are zeros). A row is shared by G = D / COLS
// threads, each keeping COLS of its columns -- thread `part` of the group owns columns part, part + G,
// part + 2G, ... -- in fixed-size arrays indexed only by unrolled loops, so they live in registers
// (ptxas: 0 bytes of stack). A dot product is COLS multiply-adds per thread, then a sum across the
// group's G lanes with __shfl_xor_sync. Every thread of a block runs the same loops (a masked score is
// computed, then ignored), because the G lanes of a row must meet at each shuffle.

#define TILE 32  // keys (or queries) per shared-memory tile
#define COLS 16  // columns of a row per thread
#define INF_F __int_as_float(0x7f800000)  // +infinity (NVRTC has no INFINITY macro)

// This block's (b*H + h) and the index of its first row; a block holds blockDim.x / G rows.
__device__ __forceinline__ void block_place(long long B, long long H, int G, long long* bh, long long* row0) {
    const long long per_bh = gridDim.x / (B * H);
    *bh = blockIdx.x / per_bh;
    *row0 = (blockIdx.x % per_bh) * (blockDim.x / G);
}

__device__ __forceinline__ bool allowed(const signed char* mask, int has_mask, int causal, long long b, long long Lk,
                                        long long i, long long j) {
    return (!has_mask || mask[b * Lk + j]) && (!causal || j <= i);
}

// Keys a block of query rows [row0, row0 + rows) reads: all, or with a causal mask only j <= i,
// so the tiles above the diagonal are skipped (the bound is the same for every thread of the block).
__device__ __forceinline__ long long keys_needed(int causal, long long row0, long long rows, long long Lk) {
    return causal && row0 + rows < Lk ? row0 + rows : Lk;
}

// Sum of x over the G lanes of a row group (G a power of two; the lanes are neighbours in the warp).
template <int G>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
    for (int offset = G / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

__device__ __forceinline__ void zeros(float* a) {
#pragma unroll
    for (int c = 0; c < COLS; ++c) a[c] = 0.0f;
}

// This thread's COLS columns of a row of `width` values (zeros past the end, or for a row that is not there).
template <int G>
__device__ __forceinline__ void load_row(float* dst, const float* row, int width, int part, bool there, float factor) {
#pragma unroll
    for (int c = 0; c < COLS; ++c) {
        const int col = part + G * c;
        dst[c] = there && col < width ? row[col] * factor : 0.0f;
    }
}

template <int G>
__device__ __forceinline__ void store_row(float* row, const float* src, int width, int part, float factor) {
#pragma unroll
    for (int c = 0; c < COLS; ++c)
        if (part + G * c < width) row[part + G * c] = src[c] * factor;
}

// This thread's part of the dot product of its row with a row of a shared tile.
template <int G>
__device__ __forceinline__ float partial_dot(const float* mine, const float* tile_row, int part) {
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < COLS; ++c) s += mine[c] * tile_row[part + G * c];
    return s;
}

template <int G>
__device__ __forceinline__ void add_scaled(float* acc, float p, const float* tile_row, int part) {
#pragma unroll
    for (int c = 0; c < COLS; ++c) acc[c] += p * tile_row[part + G * c];
}

// Loads rows [r0, r0 + TILE) of a (rows, width) matrix into a (TILE, D) tile, zeros past either end.
template <int D>
__device__ void load_tile(float (*tile)[D], const float* src, long long r0, long long rows, int width) {
    for (int e = threadIdx.x; e < TILE * D; e += blockDim.x) {
        const int r = e / D, c = e % D;
        tile[r][c] = (r0 + r < rows && c < width) ? src[(r0 + r) * width + c] : 0.0f;
    }
}

template <int D>
__device__ void forward(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                        const signed char* __restrict__ mask, float* __restrict__ out, float* __restrict__ lse,
                        long long B, long long H, long long Lq, long long Lk, int d, int dv, float scale,
                        int has_mask, int causal) {
    constexpr int G = D / COLS;
    __shared__ float ks[TILE][D];
    __shared__ float vs[TILE][D];
    long long bh, row0;
    block_place(B, H, G, &bh, &row0);
    const int part = threadIdx.x % G;
    const long long b = bh / H, i = row0 + threadIdx.x / G;
    const bool active = i < Lq;
    float qi[COLS], acc[COLS];
    load_row<G>(qi, q + (bh * Lq + i) * d, d, part, active, scale);
    zeros(acc);
    float m = -INF_F, l = 0.0f;
    const long long j_end = keys_needed(causal, row0, blockDim.x / G, Lk);
    for (long long j0 = 0; j0 < j_end; j0 += TILE) {
        load_tile<D>(ks, k + bh * Lk * d, j0, Lk, d);
        load_tile<D>(vs, v + bh * Lk * dv, j0, Lk, dv);
        __syncthreads();
        const int rows = Lk - j0 < TILE ? (int)(Lk - j0) : TILE;
        for (int r = 0; r < rows; ++r) {
            const float s = group_sum<G>(partial_dot<G>(qi, ks[r], part));
            if (!active || !allowed(mask, has_mask, causal, b, Lk, i, j0 + r)) continue;
            if (s > m) {  // a new maximum: rescale what was summed so far
                const float correction = expf(m - s);
                l *= correction;
#pragma unroll
                for (int c = 0; c < COLS; ++c) acc[c] *= correction;
                m = s;
            }
            const float p = expf(s - m);
            l += p;
            add_scaled<G>(acc, p, vs[r], part);
        }
        __syncthreads();
    }
    if (active) {
        store_row<G>(out + (bh * Lq + i) * dv, acc, dv, part, l > 0.0f ? 1.0f / l : 0.0f);
        if (part == 0) lse[bh * Lq + i] = l > 0.0f ? m + logf(l) : INF_F;
    }
}

template <int D>
__device__ void backward_dq(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                            const signed char* __restrict__ mask, const float* __restrict__ lse,
                            const float* __restrict__ dout, const float* __restrict__ delta, float* __restrict__ dq,
                            long long B, long long H, long long Lq, long long Lk, int d, int dv, float scale,
                            int has_mask, int causal) {
    constexpr int G = D / COLS;
    __shared__ float ks[TILE][D];
    __shared__ float vs[TILE][D];
    long long bh, row0;
    block_place(B, H, G, &bh, &row0);
    const int part = threadIdx.x % G;
    const long long b = bh / H, i = row0 + threadIdx.x / G;
    const bool active = i < Lq;
    float qi[COLS], doi[COLS], acc[COLS];
    load_row<G>(qi, q + (bh * Lq + i) * d, d, part, active, scale);
    load_row<G>(doi, dout + (bh * Lq + i) * dv, dv, part, active, 1.0f);
    zeros(acc);
    const float lse_i = active ? lse[bh * Lq + i] : INF_F;
    const float delta_i = active ? delta[bh * Lq + i] : 0.0f;
    const long long j_end = keys_needed(causal, row0, blockDim.x / G, Lk);
    for (long long j0 = 0; j0 < j_end; j0 += TILE) {
        load_tile<D>(ks, k + bh * Lk * d, j0, Lk, d);
        load_tile<D>(vs, v + bh * Lk * dv, j0, Lk, dv);
        __syncthreads();
        const int rows = Lk - j0 < TILE ? (int)(Lk - j0) : TILE;
        for (int r = 0; r < rows; ++r) {
            const float s = group_sum<G>(partial_dot<G>(qi, ks[r], part));
            const float dp = group_sum<G>(partial_dot<G>(doi, vs[r], part));
            if (!active || !allowed(mask, has_mask, causal, b, Lk, i, j0 + r)) continue;
            add_scaled<G>(acc, expf(s - lse_i) * (dp - delta_i), ks[r], part);
        }
        __syncthreads();
    }
    if (active) store_row<G>(dq + (bh * Lq + i) * d, acc, d, part, scale);
}

template <int D>
__device__ void backward_dkv(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                             const signed char* __restrict__ mask, const float* __restrict__ lse,
                             const float* __restrict__ dout, const float* __restrict__ delta, float* __restrict__ dk,
                             float* __restrict__ dv_out, long long B, long long H, long long Lq, long long Lk, int d,
                             int dv, float scale, int has_mask, int causal) {
    constexpr int G = D / COLS;
    __shared__ float qs[TILE][D];
    __shared__ float dos[TILE][D];
    __shared__ float lse_s[TILE], delta_s[TILE];
    long long bh, row0;
    block_place(B, H, G, &bh, &row0);
    const int part = threadIdx.x % G;
    const long long b = bh / H, j = row0 + threadIdx.x / G;
    const bool active = j < Lk;
    float kj[COLS], vj[COLS], dk_acc[COLS], dv_acc[COLS];
    load_row<G>(kj, k + (bh * Lk + j) * d, d, part, active, 1.0f);
    load_row<G>(vj, v + (bh * Lk + j) * dv, dv, part, active, 1.0f);
    zeros(dk_acc);
    zeros(dv_acc);
    for (long long i0 = causal ? row0 / TILE * TILE : 0; i0 < Lq; i0 += TILE) {  // causal: queries i >= j only
        load_tile<D>(qs, q + bh * Lq * d, i0, Lq, d);
        load_tile<D>(dos, dout + bh * Lq * dv, i0, Lq, dv);
        for (int r = threadIdx.x; r < TILE; r += blockDim.x) {
            lse_s[r] = i0 + r < Lq ? lse[bh * Lq + i0 + r] : INF_F;
            delta_s[r] = i0 + r < Lq ? delta[bh * Lq + i0 + r] : 0.0f;
        }
        __syncthreads();
        const int rows = Lq - i0 < TILE ? (int)(Lq - i0) : TILE;
        for (int r = 0; r < rows; ++r) {
            const float s = group_sum<G>(partial_dot<G>(kj, qs[r], part));
            const float dp = group_sum<G>(partial_dot<G>(vj, dos[r], part));
            if (!active || !allowed(mask, has_mask, causal, b, Lk, i0 + r, j)) continue;
            const float p = expf(s * scale - lse_s[r]);
            add_scaled<G>(dv_acc, p, dos[r], part);
            add_scaled<G>(dk_acc, p * (dp - delta_s[r]), qs[r], part);
        }
        __syncthreads();
    }
    if (active) {
        store_row<G>(dk + (bh * Lk + j) * d, dk_acc, d, part, scale);
        store_row<G>(dv_out + (bh * Lk + j) * dv, dv_acc, dv, part, 1.0f);
    }
}

// The kernels: one per padded head width D, each named <kernel>_<D>.
#define FORWARD_PARAMS                                                                                          \
    const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,                       \
        const signed char *__restrict__ mask, float *__restrict__ out, float *__restrict__ lse, long long B,     \
        long long H, long long Lq, long long Lk, int d, int dv, float scale, int has_mask, int causal
#define FORWARD_ARGS q, k, v, mask, out, lse, B, H, Lq, Lk, d, dv, scale, has_mask, causal
#define DQ_PARAMS                                                                                               \
    const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,                       \
        const signed char *__restrict__ mask, const float *__restrict__ lse, const float *__restrict__ dout,     \
        const float *__restrict__ delta, float *__restrict__ dq, long long B, long long H, long long Lq,         \
        long long Lk, int d, int dv, float scale, int has_mask, int causal
#define DQ_ARGS q, k, v, mask, lse, dout, delta, dq, B, H, Lq, Lk, d, dv, scale, has_mask, causal
#define DKV_PARAMS                                                                                              \
    const float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,                       \
        const signed char *__restrict__ mask, const float *__restrict__ lse, const float *__restrict__ dout,     \
        const float *__restrict__ delta, float *__restrict__ dk, float *__restrict__ dv_out, long long B,        \
        long long H, long long Lq, long long Lk, int d, int dv, float scale, int has_mask, int causal
#define DKV_ARGS q, k, v, mask, lse, dout, delta, dk, dv_out, B, H, Lq, Lk, d, dv, scale, has_mask, causal

extern "C" {
__global__ void attention_forward_32(FORWARD_PARAMS) { forward<32>(FORWARD_ARGS); }
__global__ void attention_forward_64(FORWARD_PARAMS) { forward<64>(FORWARD_ARGS); }
__global__ void attention_forward_128(FORWARD_PARAMS) { forward<128>(FORWARD_ARGS); }
__global__ void attention_backward_dq_32(DQ_PARAMS) { backward_dq<32>(DQ_ARGS); }
__global__ void attention_backward_dq_64(DQ_PARAMS) { backward_dq<64>(DQ_ARGS); }
__global__ void attention_backward_dq_128(DQ_PARAMS) { backward_dq<128>(DQ_ARGS); }
__global__ void attention_backward_dkv_32(DKV_PARAMS) { backward_dkv<32>(DKV_ARGS); }
__global__ void attention_backward_dkv_64(DKV_PARAMS) { backward_dkv<64>(DKV_ARGS); }
__global__ void attention_backward_dkv_128(DKV_PARAMS) { backward_dkv<128>(DKV_ARGS); }
}
