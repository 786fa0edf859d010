// Fused optimizer updates: one launch per weight tensor instead of ~10 small ones.
//
// Each thread updates element i of the weight w in place, from its gradient g
// and its running averages, with exactly the equations of the NumPy twins in
// gpunn/ops/optimizers.py:
//
//   sgd:           w -= lr g
//   sgd_momentum:  v = mu v - lr g;   w += v                  (nesterov: w += mu v - lr g)
//   adagrad:       s += g^2;          w -= lr g / (sqrt(s) + eps)
//   rmsprop:       s = rho s + (1 - rho) g^2;   w -= lr g / (sqrt(s) + eps)
//   adam:          m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//                  w -= lr (m / bc1) / (sqrt(v / bc2) + eps)   with bc1 = 1 - b1^t, bc2 = 1 - b2^t
//
// float32 only (training); grid-stride loops, 64-bit element counts.

#define FOR_EACH_ELEMENT(n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

extern "C" {

__global__ void sgd_update(float* __restrict__ w, const float* __restrict__ g, long long n, float lr) {
    FOR_EACH_ELEMENT(n) { w[i] -= lr * g[i]; }
}

__global__ void sgd_momentum_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v,
                                    long long n, float lr, float momentum, int nesterov) {
    FOR_EACH_ELEMENT(n) {
        const float vi = momentum * v[i] - lr * g[i];
        v[i] = vi;
        w[i] += nesterov ? momentum * vi - lr * g[i] : vi;
    }
}

__global__ void adagrad_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                               long long n, float lr, float eps) {
    FOR_EACH_ELEMENT(n) {
        const float si = s[i] + g[i] * g[i];
        s[i] = si;
        w[i] -= lr * g[i] / (sqrtf(si) + eps);
    }
}

__global__ void rmsprop_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                               long long n, float lr, float rho, float eps) {
    FOR_EACH_ELEMENT(n) {
        const float si = rho * s[i] + (1.0f - rho) * g[i] * g[i];
        s[i] = si;
        w[i] -= lr * g[i] / (sqrtf(si) + eps);
    }
}

__global__ void adam_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, long long n, float lr, float beta_1, float beta_2, float eps,
                            float bc1, float bc2) {
    FOR_EACH_ELEMENT(n) {
        const float gi = g[i];
        const float mi = beta_1 * m[i] + (1.0f - beta_1) * gi;
        const float vi = beta_2 * v[i] + (1.0f - beta_2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
    }
}
}
