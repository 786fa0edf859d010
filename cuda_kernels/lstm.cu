// One time step of an LSTM cell, fused: everything between the two matrix products.
//
// Gate pre-activations, (B, 4H) in the order i, f, g, o (as in Keras):
//     z = zx + zh,   zx = x_t W + b (all steps in one GEMM, before the loop),  zh = h_{t-1} U (one GEMM per step)
// Forward, per unit j of example b (one thread each):
//     i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_g)   o = sigmoid(z_o)
//     c_t = f * c_{t-1} + i * g
//     h_t = o * tanh(c_t)
// The activated gates and c_t are stored for backward.
//
// Backward, from dh = dh_out + dh_rec (the loss's gradient at this step plus the one
// coming back through h_t's use at t+1) and dc_next (through c_t's use at t+1):
//     dc     = dc_next + dh * o * (1 - tanh(c_t)^2)
//     dz_i   = dc * g * i (1 - i)          dz_f = dc * c_{t-1} * f (1 - f)
//     dz_g   = dc * i * (1 - g^2)          dz_o = dh * tanh(c_t) * o (1 - o)
//     dc_{t-1} = dc * f
// The weight gradients are then matrix products over all steps (in Python).

__device__ __forceinline__ float sigmoid(float z) { return 0.5f * (1.0f + tanhf(0.5f * z)); }

extern "C" {

__global__ void lstm_step_forward(const float* __restrict__ zx, const float* __restrict__ zh,
                                  const float* __restrict__ c_prev, float* __restrict__ gates,
                                  float* __restrict__ c, float* __restrict__ h, long long B, long long H) {
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < B * H;
         k += (long long)gridDim.x * blockDim.x) {
        const long long b = k / H, j = k % H;
        const long long row = b * 4 * H;  // the four gates of unit j sit at j, H + j, 2H + j, 3H + j
        const float i = sigmoid(zx[row + j] + zh[row + j]);
        const float f = sigmoid(zx[row + H + j] + zh[row + H + j]);
        const float g = tanhf(zx[row + 2 * H + j] + zh[row + 2 * H + j]);
        const float o = sigmoid(zx[row + 3 * H + j] + zh[row + 3 * H + j]);
        const float ct = f * c_prev[k] + i * g;
        gates[row + j] = i;
        gates[row + H + j] = f;
        gates[row + 2 * H + j] = g;
        gates[row + 3 * H + j] = o;
        c[k] = ct;
        h[k] = o * tanhf(ct);
    }
}

__global__ void lstm_step_backward(const float* __restrict__ dh_out, const float* __restrict__ dh_rec,
                                   const float* __restrict__ dc_next, const float* __restrict__ gates,
                                   const float* __restrict__ c_prev, const float* __restrict__ c,
                                   float* __restrict__ dz, float* __restrict__ dc_prev, long long B, long long H) {
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < B * H;
         k += (long long)gridDim.x * blockDim.x) {
        const long long b = k / H, j = k % H;
        const long long row = b * 4 * H;
        const float i = gates[row + j], f = gates[row + H + j], g = gates[row + 2 * H + j], o = gates[row + 3 * H + j];
        const float tc = tanhf(c[k]);
        const float dh = dh_out[k] + dh_rec[k];
        const float dc = dc_next[k] + dh * o * (1.0f - tc * tc);
        dz[row + j] = dc * g * i * (1.0f - i);
        dz[row + H + j] = dc * c_prev[k] * f * (1.0f - f);
        dz[row + 2 * H + j] = dc * i * (1.0f - g * g);
        dz[row + 3 * H + j] = dh * tc * o * (1.0f - o);
        dc_prev[k] = dc * f;
    }
}
}
