// The epilogue of a convolution's GEMM: bias, activation and the change of layout, in one pass.
//
// Conv2D computes the whole batch as one matrix product (see im2col.cu):
//   Z = W2 . col + b      zf : (F, N*P)     F filters, N images, P = OH*OW pixels per image
// but the layer's output is channels-first per image:
//   A = g(Z)              out : (N, F, P)
// Without this file that takes 3-4 launches (a transpose written out by the bias add, then
// ReLU's mask and its maximum); here it is one. Backward, dZ = dA * g'(Z) must go back to the
// layout of Z, (F, N*P), for the two GEMMs dW2 = dZ . col^T and dcol = W2^T . dZ: one more pass, which
// also sums the bias gradient db = sum dZ (what was one more launch).
//
// g'(Z) is computed from the output A alone, so nothing else is stored (activate.cuh).
// (A small product runs as one kernel with this epilogue in it: sgemm_bias_act, gemm.cu.)
//
// Dense's z = x . W is the same thing with F features, N rows and P = 1, once Z is computed
// as W^T . x^T (F, N). float32 only (training); 64-bit indices.

#include "activate.cuh"
#include "reduce.cuh"

#define FOR_EACH_ELEMENT(n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

extern "C" {

// One thread per output element out[n, f, p] (i = (n*F + f)*P + p): it reads zf[f, n*P + p], adds
// b[f] and applies g. The writes are coalesced; the reads are, along each run of P pixels.
__global__ void conv_bias_act_forward(const float* __restrict__ zf, const float* __restrict__ bias, int has_bias,
                                      float* __restrict__ out, long long F, long long N, long long P,
                                      int activation) {
    FOR_EACH_ELEMENT(N * F * P) {
        const long long p = i % P;
        const long long f = (i / P) % F;
        const long long n = i / (P * F);
        const float z = zf[(f * N + n) * P + p] + (has_bias ? bias[f] : 0.0f);
        out[i] = activate(z, activation);
    }
}

// dZ = dA * g'(Z), from dy[n, f, p] and the forward's out[n, f, p], into dzf[f, n*P + p]; and, when has_bias,
// the bias gradient in the same pass:  db[f] = sum over n, p of dZ[f, n*P + p]  (the course's db = sum dZ).
//
// Each row f of dzf (L = N*P elements) is cut into `chunks` equal segments, one block each (block b: row
// b / chunks, segment b % chunks). A block writes its segment -- coalesced writes; the reads are coalesced
// along each run of P pixels -- and adds it up, each thread in registers, then the block; the row's last block
// to finish adds the row's partial sums and writes db[f]: the same sum on every run (reduce.cuh).

__global__ void conv_bias_act_backward(const float* __restrict__ dy, const float* __restrict__ out,
                                       float* __restrict__ dzf, float* __restrict__ db, int has_bias,
                                       float* __restrict__ partials, int* __restrict__ counters, long long F,
                                       long long N, long long P, int activation, long long chunks) {
    const long long L = N * P, f = blockIdx.x / chunks, c = blockIdx.x % chunks;
    const long long segment = (L + chunks - 1) / chunks, end = (c + 1) * segment < L ? (c + 1) * segment : L;
    float sum = 0.0f;
    for (long long j = c * segment + threadIdx.x; j < end; j += blockDim.x) {
        const long long n = j / P, p = j % P, k = (n * F + f) * P + p;
        const float dz = activation_derivative_times(dy[k], out[k], activation);
        dzf[f * L + j] = dz;
        sum += dz;
    }
    if (!has_bias) return;  // the same for every thread of the launch: no __syncthreads is left waiting
    float total;
    if (sum_of_blocks(block_sum(sum), partials + f * chunks, c, chunks, counters + f, &total) && threadIdx.x == 0)
        db[f] = total;
}
}
