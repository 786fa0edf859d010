// Softmax over rows, and its cross-entropy: rows of logits z (rows, k), row-major -- rows = m examples,
// or m T steps of sequences -- each turned into a probability vector, forward and backward, and the
// cross-entropy of that softmax fused with it, loss and gradient in one launch (the element-wise way
// takes about a dozen: max, exp, sum, log, a one-hot...). With M_r = max_j z_rj, subtracted first so
// that e^z cannot overflow, and S_r = sum_j e^(z_rj - M_r):
//
// softmax_forward:        a_rj = e^(z_rj - M_r) / S_r
// softmax_backward:       dz_rj = a_rj (da_rj - sum_i da_ri a_ri)    (the Jacobian a_j (delta_ij - a_i), applied)
// softmax_cross_entropy:  row r has an integer label y_r in [0, k) and a weight w_r (1 when has_weights
// is 0: the sample weight, 0 for a masked step, see gpunn.losses.apply_mask):
//     lse_r    = M_r + log S_r                               = log sum_j e^z_rj
//     loss_r   = w_r (lse_r - z_{r, y_r})                    = -w_r log softmax(z_r)_{y_r}
//     dz_rj    = w_r (softmax(z_r)_j - [j == y_r]) / m       softmax(z_r)_j = e^(z_rj - lse_r)
// inv_batch is 1/m. The mean J = 1/m sum_r loss_r is summed in the same launch, the same way on every run:
// each block adds its rows' losses, and the last block to finish adds the blocks' sums (reduce.cuh: `partials`
// holds gridDim.x floats, `counter` is at 0) and writes J to loss_mean[0].
// A label outside [0, k) gives a NaN loss (never a read outside the row).
//
// One warp (32 threads) per row: lane l reads the classes l, l + 32, l + 64, ..., and the lanes then
// combine their maxima and their sums with __shfl_xor_sync (a butterfly: after 5 exchanges every
// lane holds the row's total). The loop over rows has the same bounds for every thread of a block,
// and a warp past the last row still runs it (reading nothing), so the whole block meets at each shuffle.

#include "reduce.cuh"

#define WARP 32
#define INF_F __int_as_float(0x7f800000)  // +infinity (NVRTC has no INFINITY macro)
#define NAN_F __int_as_float(0x7fc00000)

__device__ __forceinline__ float warp_max(float x) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int offset = WARP / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(0xffffffffu, x, offset);
    return x;
}

// M_r and S_r of the row at zr, in every lane of the warp (a warp with no row, mine false: -inf and 0).
__device__ __forceinline__ float row_max(const float* __restrict__ zr, long long classes, int lane, bool mine) {
    float m = -INF_F;
    for (long long j = lane; mine && j < classes; j += WARP) m = fmaxf(m, zr[j]);
    return warp_max(m);
}

__device__ __forceinline__ float row_sum_exp(const float* __restrict__ zr, float m, long long classes, int lane,
                                             bool mine) {
    float s = 0.0f;
    for (long long j = lane; mine && j < classes; j += WARP) s += expf(zr[j] - m);
    return warp_sum(s);
}

// A warp per row: lane (0..31) of row r. Every warp of a block runs the loop as often as the others (the
// bound is on the block's first row), so a warp past the last row still meets the others at each shuffle.
#define FOR_EACH_ROW(rows)                                                                             \
    const int lane = threadIdx.x % WARP;                                                               \
    const long long warps = blockDim.x / WARP; /* rows a block works on at once */                      \
    for (long long first = blockIdx.x * warps, r = first + threadIdx.x / WARP; first < (rows);         \
         first += (long long)gridDim.x * warps, r = first + threadIdx.x / WARP)

extern "C" {

__global__ void softmax_forward(const float* __restrict__ z, float* __restrict__ a, long long rows,
                                long long classes) {
    FOR_EACH_ROW(rows) {
        const bool mine = r < rows;  // else this warp only takes part in the shuffles
        const float* zr = z + (mine ? r : 0) * classes;
        const float m = row_max(zr, classes, lane, mine);
        const float s = row_sum_exp(zr, m, classes, lane, mine);
        if (!mine) continue;
        for (long long j = lane; j < classes; j += WARP) a[r * classes + j] = expf(zr[j] - m) / s;
    }
}

__global__ void softmax_backward(const float* __restrict__ a, const float* __restrict__ da, float* __restrict__ dz,
                                 long long rows, long long classes) {
    FOR_EACH_ROW(rows) {
        const bool mine = r < rows;  // else this warp only takes part in the shuffles
        const long long row = (mine ? r : 0) * classes;
        float dot = 0.0f;  // sum_i da_ri a_ri
        for (long long j = lane; mine && j < classes; j += WARP) dot += da[row + j] * a[row + j];
        dot = warp_sum(dot);
        if (!mine) continue;
        for (long long j = lane; j < classes; j += WARP) dz[row + j] = a[row + j] * (da[row + j] - dot);
    }
}

__global__ void softmax_cross_entropy(const float* __restrict__ z, const long long* __restrict__ labels,
                                      const float* __restrict__ weights, int has_weights,
                                      float* __restrict__ loss_rows, float* __restrict__ dz,
                                      float* __restrict__ loss_mean, float* __restrict__ partials,
                                      int* __restrict__ counter, long long rows, long long classes, float inv_batch) {
    float sum = 0.0f;  // lane 0: the losses of this warp's rows
    FOR_EACH_ROW(rows) {
        const bool mine = r < rows;  // else this warp only takes part in the shuffles
        const float* zr = z + (mine ? r : 0) * classes;

        const float m = row_max(zr, classes, lane, mine);
        const float lse = m + logf(row_sum_exp(zr, m, classes, lane, mine));
        if (!mine) continue;

        const long long y = labels[r];
        const float w = has_weights ? weights[r] : 1.0f;
        const float loss = 0 <= y && y < classes ? w * (lse - zr[y]) : NAN_F;
        if (lane == 0) {
            loss_rows[r] = loss;
            sum += loss;
        }
        const float scale = w * inv_batch;
        for (long long j = lane; j < classes; j += WARP)
            dz[r * classes + j] = scale * (expf(zr[j] - lse) - (j == y ? 1.0f : 0.0f));
    }
    float total;
    if (sum_of_blocks(block_sum(sum), partials, blockIdx.x, gridDim.x, counter, &total) && threadIdx.x == 0)
        loss_mean[0] = total * inv_batch;
}
}
