// Embedding backward, deterministic: dE[v] = sum of dy[k] over every position k whose id is v.
//
// The obvious GPU version, a scatter-add with atomicAdd, sums each row in whatever order
// the threads arrive: two runs of the same training differ in the last bits. Here the
// positions come sorted by id (order, a stable sort), and starts[v] .. starts[v + 1] is
// the run of sorted positions that hold id v; one thread per element (v, c) of dE adds
// its run in that fixed order, so every run gives the same bits.
//
// Layout: dy (n, dim) with n = batch * time; order, starts int64; grad (vocab, dim).
// Consecutive threads take consecutive c of one row: reads of dy and writes are coalesced.

extern "C" __global__ void embedding_backward(const long long* __restrict__ order,
                                              const long long* __restrict__ starts,
                                              const float* __restrict__ dy, float* __restrict__ grad,
                                              long long vocab, long long dim) {
    const long long total = vocab * dim;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        const long long v = i / dim, c = i % dim;
        float sum = 0.0f;
        for (long long k = starts[v]; k < starts[v + 1]; ++k) sum += dy[order[k] * dim + c];
        grad[i] = sum;
    }
}
