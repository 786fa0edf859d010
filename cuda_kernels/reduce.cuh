// Sums that come out the same on every run, for kernels that add up what their blocks computed (included
// by epilogue.cu and losses.cu; gpunn/backend/kernels.py pastes it in where they #include it).
//
// Adding floats with atomicAdd gives a different rounding on each run (the order the blocks finish in);
// here every addition has a fixed place instead. block_sum adds the block's threads in a fixed tree. Across
// blocks, each block leaves its sum in partials[slot], takes a ticket from a counter (atomicAdd on an int,
// which is exact), and the block that takes the last ticket adds all the partials, in slot order, and sets
// the counter back to 0 for the next launch (gpunn.backend.kernels.block_counters hands out counters at 0).
// __threadfence() makes a partial visible to every block before its ticket is taken.

#define REDUCE_THREADS 1024  // the largest block these take (a power of two, as every gpunn launch's block is)

// v summed over the block's threads, returned to all of them. blockDim.x must be a power of two.
__device__ float block_sum(float v) {
    __shared__ float scratch[REDUCE_THREADS];
    scratch[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
        __syncthreads();
    }
    v = scratch[0];
    __syncthreads();  // before anyone writes scratch again
    return v;
}

// Called by every thread of each of the `count` blocks that share `counter`, with the block's sum v (the same
// in every thread): true in the last block to arrive, with *total the sum of partials[0 .. count) in order.
__device__ bool sum_of_blocks(float v, float* partials, long long slot, long long count, int* counter, float* total) {
    __shared__ int last;
    if (threadIdx.x == 0) {
        partials[slot] = v;
        __threadfence();
        last = atomicAdd(counter, 1) == count - 1;
    }
    __syncthreads();
    if (!last) return false;
    __threadfence();  // read the others' partials after our ticket
    float sum = 0.0f;
    for (long long i = threadIdx.x; i < count; i += blockDim.x) sum += ((volatile float*)partials)[i];
    *total = block_sum(sum);
    if (threadIdx.x == 0) *counter = 0;
    return true;
}
