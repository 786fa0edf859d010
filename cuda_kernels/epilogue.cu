// The epilogue of a convolution's GEMM: bias, activation and the change of layout, in one pass.
//
// Conv2D computes the whole batch as one matrix product (see im2col.cu):
//   Z = W2 . col + b      zf : (F, N*P)     F filters, N images, P = OH*OW pixels per image
// but the layer's output is channels-first per image:
//   A = g(Z)              out : (N, F, P)
// Without this file that takes 3-4 launches (a transpose written out by the bias add, then
// ReLU's mask and its maximum); here it is one. Backward, dZ = dA * g'(Z) must go back to the
// layout of Z, (F, N*P), for the two GEMMs dW2 = dZ . col^T and dcol = W2^T . dZ: one more pass.
//
// g'(Z) is computed from the output A alone, so nothing else is stored:
//   linear (0):  a = z                        g' = 1
//   relu (1):    a = max(z, 0)                g' = 1 if a > 0 else 0    (a > 0 exactly when z > 0)
//   sigmoid (2): a = (1 + tanh(z/2)) / 2      g' = a (1 - a)            (no exp() that overflows)
//   tanh (3):    a = tanh(z)                  g' = 1 - a^2
// with the same operations, in the same order, as the NumPy twins in gpunn/ops/epilogue.py.
//
// Dense's z = x . W is the same thing with F features, N rows and P = 1, once Z is computed
// as W^T . x^T (F, N). float32 only (training); grid-stride loops, 64-bit indices.

#define FOR_EACH_ELEMENT(n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

enum Activation { LINEAR = 0, RELU = 1, SIGMOID = 2, TANH = 3 };

__device__ __forceinline__ float activate(float z, int activation) {
    switch (activation) {
        case RELU: return z < 0.0f ? 0.0f : z;  // written so that NaN passes, as in NumPy's maximum
        case SIGMOID: return 0.5f * (1.0f + tanhf(0.5f * z));
        case TANH: return tanhf(z);
        default: return z;
    }
}

__device__ __forceinline__ float activation_derivative_times(float dy, float a, int activation) {
    switch (activation) {
        case RELU: return dy * (a > 0.0f ? 1.0f : 0.0f);  // a product, so a NaN in dy stays NaN
        case SIGMOID: return dy * a * (1.0f - a);
        case TANH: return dy * (1.0f - a * a);
        default: return dy;
    }
}

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

// One thread per element of dzf[f, n*P + p] (j = (f*N + n)*P + p): dZ = dA * g'(Z), from dy[n, f, p]
// and the forward's out[n, f, p]. The writes are coalesced; the reads are, along each run of P pixels.
__global__ void conv_bias_act_backward(const float* __restrict__ dy, const float* __restrict__ out,
                                       float* __restrict__ dzf, long long F, long long N, long long P,
                                       int activation) {
    FOR_EACH_ELEMENT(F * N * P) {
        const long long p = i % P;
        const long long n = (i / P) % N;
        const long long f = i / (P * N);
        const long long k = (n * F + f) * P + p;
        dzf[i] = activation_derivative_times(dy[k], out[k], activation);
    }
}
}
