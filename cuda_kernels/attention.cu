// Scaled dot-product attention, fused: softmax(Q K^T * scale) V without an L x L buffer.
//
// Layout: q (B, H, Lq, d), k (B, H, Lk, d), v (B, H, Lk, dv), row-major; out (B, H, Lq, dv);
// lse (B, H, Lq); mask (B, Lk) int8, 1 = key may be attended (read only when has_mask).
// Grid: one dimension, B*H groups of blocks; block x works on (b, h) = divmod(x / per_bh, H)
// (per_bh = gridDim.x / (B*H) row blocks each), so all threads of a block share one (b, h)
// and can load tiles of K and V (or Q and dOut) into shared memory together. (The x
// dimension takes 2^31 - 1 blocks; y and z stop at 65535, too few for B*H in evaluation.)
//
// Forward, one thread per query row i, keys streamed in tiles of TILE with an online softmax:
//     m = running max of the scores s_ij seen so far, l = sum_j exp(s_ij - m),
//     acc = sum_j exp(s_ij - m) v_j;  a larger score s rescales l and acc by exp(m - s).
//     out_i = acc / l,  lse_i = m + log(l);  a row with no allowed key: out_i = 0, lse_i = +inf.
// Backward (with D_i = sum_c dout_ic out_ic, computed beforehand), p_ij = exp(s_ij - lse_i):
//     dq_i = scale * sum_j p_ij (dout_i . v_j - D_i) k_j            one thread per query row
//     dv_j = sum_i p_ij dout_i;  dk_j = scale * sum_i p_ij (dout_i . v_j - D_i) q_i   one thread per key row
// Head dims up to MAXD; causal: key j is allowed for query i when j <= i, and tiles that are
// entirely above the diagonal are not visited.

#define TILE 32
#define MAXD 128
#define INF_F __int_as_float(0x7f800000)  // +infinity (NVRTC has no INFINITY macro)

// This block's (b*H + h) and the index of its first row.
__device__ __forceinline__ void block_place(long long B, long long H, long long* bh, long long* row0) {
    const long long per_bh = gridDim.x / (B * H);
    *bh = blockIdx.x / per_bh;
    *row0 = (blockIdx.x % per_bh) * blockDim.x;
}

__device__ __forceinline__ bool allowed(const signed char* mask, int has_mask, int causal, long long b, long long Lk,
                                        long long i, long long j) {
    return (!has_mask || mask[b * Lk + j]) && (!causal || j <= i);
}

// Keys a block of query rows [row0, row0 + blockDim.x) reads: all, or with a causal mask only j <= i,
// so the tiles above the diagonal are skipped (the bound is the same for every thread of the block).
__device__ __forceinline__ long long keys_needed(int causal, long long row0, long long Lk) {
    const long long last = row0 + (long long)blockDim.x;  // one past the block's last query row
    return causal && last < Lk ? last : Lk;
}

// Loads rows [r0, r0 + TILE) of a (rows, width) matrix into tile (zeros past the end).
__device__ void load_tile(float (*tile)[MAXD], const float* src, long long r0, long long rows, int width) {
    for (int e = threadIdx.x; e < TILE * width; e += blockDim.x) {
        const int r = e / width, c = e % width;
        tile[r][c] = (r0 + r < rows) ? src[(r0 + r) * width + c] : 0.0f;
    }
}

extern "C" {

__global__ void attention_forward(const float* __restrict__ q, const float* __restrict__ k,
                                  const float* __restrict__ v, const signed char* __restrict__ mask,
                                  float* __restrict__ out, float* __restrict__ lse, long long B, long long H,
                                  long long Lq, long long Lk, int d, int dv, float scale, int has_mask, int causal) {
    __shared__ float ks[TILE][MAXD];
    __shared__ float vs[TILE][MAXD];
    long long bh, row0;
    block_place(B, H, &bh, &row0);
    const long long b = bh / H, i = row0 + threadIdx.x;
    const bool active = i < Lq;
    const float* k_bh = k + bh * Lk * d;
    const float* v_bh = v + bh * Lk * dv;
    float qi[MAXD], acc[MAXD];
    float m = -INF_F, l = 0.0f;
    for (int c = 0; c < d; ++c) qi[c] = active ? q[(bh * Lq + i) * d + c] * scale : 0.0f;
    for (int c = 0; c < dv; ++c) acc[c] = 0.0f;
    const long long j_end = keys_needed(causal, row0, Lk);
    for (long long j0 = 0; j0 < j_end; j0 += TILE) {
        load_tile(ks, k_bh, j0, Lk, d);
        load_tile(vs, v_bh, j0, Lk, dv);
        __syncthreads();
        for (int r = 0; active && r < TILE && j0 + r < Lk; ++r) {
            if (!allowed(mask, has_mask, causal, b, Lk, i, j0 + r)) continue;
            float s = 0.0f;
            for (int c = 0; c < d; ++c) s += qi[c] * ks[r][c];
            if (s > m) {  // a new maximum: rescale what was summed so far
                const float correction = expf(m - s);
                l *= correction;
                for (int c = 0; c < dv; ++c) acc[c] *= correction;
                m = s;
            }
            const float p = expf(s - m);
            l += p;
            for (int c = 0; c < dv; ++c) acc[c] += p * vs[r][c];
        }
        __syncthreads();
    }
    if (active) {
        for (int c = 0; c < dv; ++c) out[(bh * Lq + i) * dv + c] = l > 0.0f ? acc[c] / l : 0.0f;
        lse[bh * Lq + i] = l > 0.0f ? m + logf(l) : INF_F;
    }
}

__global__ void attention_backward_dq(const float* __restrict__ q, const float* __restrict__ k,
                                      const float* __restrict__ v, const signed char* __restrict__ mask,
                                      const float* __restrict__ lse, const float* __restrict__ dout,
                                      const float* __restrict__ delta, float* __restrict__ dq, long long B,
                                      long long H, long long Lq, long long Lk, int d, int dv, float scale,
                                      int has_mask, int causal) {
    __shared__ float ks[TILE][MAXD];
    __shared__ float vs[TILE][MAXD];
    long long bh, row0;
    block_place(B, H, &bh, &row0);
    const long long b = bh / H, i = row0 + threadIdx.x;
    const bool active = i < Lq;
    float qi[MAXD], doi[MAXD], acc[MAXD];
    for (int c = 0; c < d; ++c) {
        qi[c] = active ? q[(bh * Lq + i) * d + c] * scale : 0.0f;
        acc[c] = 0.0f;
    }
    for (int c = 0; c < dv; ++c) doi[c] = active ? dout[(bh * Lq + i) * dv + c] : 0.0f;
    const float lse_i = active ? lse[bh * Lq + i] : INF_F;
    const float delta_i = active ? delta[bh * Lq + i] : 0.0f;
    const long long j_end = keys_needed(causal, row0, Lk);
    for (long long j0 = 0; j0 < j_end; j0 += TILE) {
        load_tile(ks, k + bh * Lk * d, j0, Lk, d);
        load_tile(vs, v + bh * Lk * dv, j0, Lk, dv);
        __syncthreads();
        for (int r = 0; active && r < TILE && j0 + r < Lk; ++r) {
            if (!allowed(mask, has_mask, causal, b, Lk, i, j0 + r)) continue;
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < d; ++c) s += qi[c] * ks[r][c];
            for (int c = 0; c < dv; ++c) dp += doi[c] * vs[r][c];
            const float ds = expf(s - lse_i) * (dp - delta_i);
            for (int c = 0; c < d; ++c) acc[c] += ds * ks[r][c];
        }
        __syncthreads();
    }
    if (active)
        for (int c = 0; c < d; ++c) dq[(bh * Lq + i) * d + c] = acc[c] * scale;
}

__global__ void attention_backward_dkv(const float* __restrict__ q, const float* __restrict__ k,
                                       const float* __restrict__ v, const signed char* __restrict__ mask,
                                       const float* __restrict__ lse, const float* __restrict__ dout,
                                       const float* __restrict__ delta, float* __restrict__ dk,
                                       float* __restrict__ dv_out, long long B, long long H, long long Lq,
                                       long long Lk, int d, int dv, float scale, int has_mask, int causal) {
    __shared__ float qs[TILE][MAXD];
    __shared__ float dos[TILE][MAXD];
    __shared__ float lse_s[TILE], delta_s[TILE];
    long long bh, row0;
    block_place(B, H, &bh, &row0);
    const long long b = bh / H, j = row0 + threadIdx.x;
    const bool active = j < Lk;
    float kj[MAXD], vj[MAXD], dk_acc[MAXD], dv_acc[MAXD];
    for (int c = 0; c < d; ++c) {
        kj[c] = active ? k[(bh * Lk + j) * d + c] : 0.0f;
        dk_acc[c] = 0.0f;
    }
    for (int c = 0; c < dv; ++c) {
        vj[c] = active ? v[(bh * Lk + j) * dv + c] : 0.0f;
        dv_acc[c] = 0.0f;
    }
    for (long long i0 = causal ? row0 / TILE * TILE : 0; i0 < Lq; i0 += TILE) {  // causal: queries i >= j only
        load_tile(qs, q + bh * Lq * d, i0, Lq, d);
        load_tile(dos, dout + bh * Lq * dv, i0, Lq, dv);
        for (int r = threadIdx.x; r < TILE; r += blockDim.x) {
            lse_s[r] = i0 + r < Lq ? lse[bh * Lq + i0 + r] : INF_F;
            delta_s[r] = i0 + r < Lq ? delta[bh * Lq + i0 + r] : 0.0f;
        }
        __syncthreads();
        for (int r = 0; active && r < TILE && i0 + r < Lq; ++r) {
            if (!allowed(mask, has_mask, causal, b, Lk, i0 + r, j)) continue;
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < d; ++c) s += qs[r][c] * kj[c];
            for (int c = 0; c < dv; ++c) dp += dos[r][c] * vj[c];
            const float p = expf(s * scale - lse_s[r]);
            const float ds = p * (dp - delta_s[r]);
            for (int c = 0; c < dv; ++c) dv_acc[c] += p * dos[r][c];
            for (int c = 0; c < d; ++c) dk_acc[c] += ds * qs[r][c];
        }
        __syncthreads();
    }
    if (active) {
        for (int c = 0; c < d; ++c) dk[(bh * Lk + j) * d + c] = dk_acc[c] * scale;
        for (int c = 0; c < dv; ++c) dv_out[(bh * Lk + j) * dv + c] = dv_acc[c];
    }
}
}
