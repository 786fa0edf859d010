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
//
// Each update is written once, as a __device__ function of one element, and launched two ways:
//   <name>_update(..., float lr, ...)              the rate (and Adam's bc1, bc2) passed by value: eager steps
//   <name>_update_scheduled(..., const float* hyper) read from device memory, hyper = [lr, bc1, bc2]: inside a
//                                                  captured CUDA graph, whose kernel arguments are frozen at the
//                                                  capture while the rate and Adam's step count change every step
// optimizer_schedule, one thread, advances the step count t in device memory and writes hyper for step t.

#define FOR_EACH_ELEMENT(n) \
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ void sgd(long long i, float* w, const float* g, float lr) { w[i] -= lr * g[i]; }

__device__ __forceinline__ void sgd_momentum(long long i, float* w, const float* g, float* v, float lr,
                                             float momentum, int nesterov) {
    const float vi = momentum * v[i] - lr * g[i];
    v[i] = vi;
    w[i] += nesterov ? momentum * vi - lr * g[i] : vi;
}

__device__ __forceinline__ void adagrad(long long i, float* w, const float* g, float* s, float lr, float eps) {
    const float si = s[i] + g[i] * g[i];
    s[i] = si;
    w[i] -= lr * g[i] / (sqrtf(si) + eps);
}

__device__ __forceinline__ void rmsprop(long long i, float* w, const float* g, float* s, float lr, float rho,
                                        float eps) {
    const float si = rho * s[i] + (1.0f - rho) * g[i] * g[i];
    s[i] = si;
    w[i] -= lr * g[i] / (sqrtf(si) + eps);
}

__device__ __forceinline__ void adam(long long i, float* w, const float* g, float* m, float* v, float lr,
                                     float beta_1, float beta_2, float eps, float bc1, float bc2) {
    const float gi = g[i];
    const float mi = beta_1 * m[i] + (1.0f - beta_1) * gi;
    const float vi = beta_2 * v[i] + (1.0f - beta_2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] -= lr * (mi / bc1) / (sqrtf(vi / bc2) + eps);
}

extern "C" {

__global__ void sgd_update(float* __restrict__ w, const float* __restrict__ g, long long n, float lr) {
    FOR_EACH_ELEMENT(n) sgd(i, w, g, lr);
}

__global__ void sgd_momentum_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ v,
                                    long long n, float lr, float momentum, int nesterov) {
    FOR_EACH_ELEMENT(n) sgd_momentum(i, w, g, v, lr, momentum, nesterov);
}

__global__ void adagrad_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                               long long n, float lr, float eps) {
    FOR_EACH_ELEMENT(n) adagrad(i, w, g, s, lr, eps);
}

__global__ void rmsprop_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                               long long n, float lr, float rho, float eps) {
    FOR_EACH_ELEMENT(n) rmsprop(i, w, g, s, lr, rho, eps);
}

__global__ void adam_update(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                            float* __restrict__ v, long long n, float lr, float beta_1, float beta_2, float eps,
                            float bc1, float bc2) {
    FOR_EACH_ELEMENT(n) adam(i, w, g, m, v, lr, beta_1, beta_2, eps, bc1, bc2);
}

// --- the same, with the rate and Adam's bias corrections read from hyper = [lr, bc1, bc2] -----------

__global__ void sgd_update_scheduled(float* __restrict__ w, const float* __restrict__ g, long long n,
                                     const float* __restrict__ hyper) {
    const float lr = hyper[0];
    FOR_EACH_ELEMENT(n) sgd(i, w, g, lr);
}

__global__ void sgd_momentum_update_scheduled(float* __restrict__ w, const float* __restrict__ g,
                                              float* __restrict__ v, long long n, const float* __restrict__ hyper,
                                              float momentum, int nesterov) {
    const float lr = hyper[0];
    FOR_EACH_ELEMENT(n) sgd_momentum(i, w, g, v, lr, momentum, nesterov);
}

__global__ void adagrad_update_scheduled(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                                         long long n, const float* __restrict__ hyper, float eps) {
    const float lr = hyper[0];
    FOR_EACH_ELEMENT(n) adagrad(i, w, g, s, lr, eps);
}

__global__ void rmsprop_update_scheduled(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ s,
                                         long long n, const float* __restrict__ hyper, float rho, float eps) {
    const float lr = hyper[0];
    FOR_EACH_ELEMENT(n) rmsprop(i, w, g, s, lr, rho, eps);
}

__global__ void adam_update_scheduled(float* __restrict__ w, const float* __restrict__ g, float* __restrict__ m,
                                      float* __restrict__ v, long long n, const float* __restrict__ hyper,
                                      float beta_1, float beta_2, float eps) {
    const float lr = hyper[0], bc1 = hyper[1], bc2 = hyper[2];
    FOR_EACH_ELEMENT(n) adam(i, w, g, m, v, lr, beta_1, beta_2, eps, bc1, bc2);
}

// One thread: t = ++step; hyper = [rate, 1 - beta_1^t, 1 - beta_2^t], the powers in double as the host computes
// them for the eager kernels (beta 0: no bias correction, hyper = [rate, 1, 1]).
__global__ void optimizer_schedule(float* __restrict__ hyper, long long* __restrict__ step,
                                   const float* __restrict__ rate, double beta_1, double beta_2) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        const double t = (double)(++step[0]);
        hyper[0] = rate[0];
        hyper[1] = (float)(1.0 - pow(beta_1, t));
        hyper[2] = (float)(1.0 - pow(beta_2, t));
    }
}
}
