// The activations the epilogues apply (included by epilogue.cu and gemm.cu), and their derivatives, each
// computed from the output A alone, so nothing else is stored:
//   linear (0):  a = z                        g' = 1
//   relu (1):    a = max(z, 0)                g' = 1 if a > 0 else 0    (a > 0 exactly when z > 0)
//   sigmoid (2): a = (1 + tanh(z/2)) / 2      g' = a (1 - a)            (no exp() that overflows)
//   tanh (3):    a = tanh(z)                  g' = 1 - a^2
// with the same operations, in the same order, as the NumPy twins in gpunn/ops/epilogue.py.

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
