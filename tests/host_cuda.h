// Runs gpunn's CUDA kernels on the CPU, for tests on machines without a GPU.
//
// A .cu file is included after this header and compiled by a C++20 host compiler:
// the CUDA keywords become plain C++, and a launch runs every thread of the grid.
//   - threadIdx / blockIdx are per OS thread; blockDim / gridDim are set per launch.
//   - Kernels that call __syncthreads() run the threads of a block together, the blocks
//     one after another: as fibers switched at each barrier (host_cuda_fibers.h, on
//     x86-64), or else one OS thread per CUDA thread with a std::barrier. __shared__
//     arrays (function statics) are shared by the threads of a block, as on the GPU.
//   - __shfl_xor_sync() trades values through a block-wide slot array between two barriers:
//     right for kernels whose whole block reaches each shuffle together (gpunn's shuffle in
//     loops whose bounds are the same for every thread of the block).
//   - Kernels without __syncthreads() or shuffles run their threads one by one, which is the same
//     result for any kernel whose threads write disjoint elements (all of gpunn's).
//   - atomicAdd on an int and __threadfence(): enough for a last-block reduction (epilogue.cu).
// What this cannot show: speed, races between blocks, and what only the GPU compiler
// rejects (NVRTC compiles the same sources in tests/test_kernels_compile.py).

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

#if defined(__x86_64__)
#define HOST_CUDA_FIBERS 1
#include "host_cuda_fibers.h"
inline void __syncthreads() { host_cuda::fibers::sync(); }
#else
namespace host_cuda {
inline std::barrier<>* block_barrier = nullptr;
}
inline void __syncthreads() { host_cuda::block_barrier->arrive_and_wait(); }
#endif

// Each thread leaves its value in its slot; after a barrier it reads its partner lane's (lane ^ lane_mask,
// which stays inside the warp and inside a segment of `width` lanes for lane_mask < width).
inline float __shfl_xor_sync(unsigned, float value, int lane_mask, int = 32) {
    static float slots[1024];
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    slots[t] = value;
    __syncthreads();
    const float partner = slots[t ^ unsigned(lane_mask)];
    __syncthreads();  // nobody overwrites a slot before its partner has read it
    return partner;
}

// Blocks run one after another here, so a block that takes a ticket with atomicAdd sees every earlier block's
// writes; the atomic and the fence matter only for the threads of one block on OS threads.
inline int atomicAdd(int* address, int value) { return std::atomic_ref<int>(*address).fetch_add(value); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}

namespace host_cuda {

inline dim3 unflatten(unsigned long long i, dim3 shape) {
    return {unsigned(i % shape.x), unsigned(i / shape.x % shape.y), unsigned(i / shape.x / shape.y)};
}

// Runs body() once for every thread of the grid.
template <typename F>
void run_grid(dim3 grid, dim3 block, bool cooperative, F body) {
    gridDim = grid;
    blockDim = block;
    const unsigned long long blocks = (unsigned long long)grid.x * grid.y * grid.z;
    const unsigned threads = block.x * block.y * block.z;
    if (!cooperative) {
        for (unsigned long long b = 0; b < blocks; ++b) {
            blockIdx = unflatten(b, grid);
            for (unsigned t = 0; t < threads; ++t) {
                threadIdx = unflatten(t, block);
                body();
            }
        }
        return;
    }
#ifdef HOST_CUDA_FIBERS
    for (unsigned long long b = 0; b < blocks; ++b) {
        blockIdx = unflatten(b, grid);
        fibers::run_block(threads, [](void* f) { (*static_cast<F*>(f))(); }, &body,
                          [&](unsigned t) { threadIdx = unflatten(t, block); });
    }
    return;
#else
    std::barrier<> sync(threads);
    block_barrier = &sync;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            threadIdx = unflatten(t, block);
            for (unsigned long long b = 0; b < blocks; ++b) {
                blockIdx = unflatten(b, grid);
                body();
                sync.arrive_and_wait();  // the whole block is done before the next one starts
            }
        });
    for (auto& th : pool) th.join();
    block_barrier = nullptr;
#endif
}

template <typename A>
using bare = std::remove_cv_t<std::remove_reference_t<A>>;

template <typename... A, std::size_t... I>
void call(void (*fn)(A...), void** args, std::index_sequence<I...>) {
    fn(*static_cast<bare<A>*>(args[I])...);
}

// Launches fn over grid x block with args[i] pointing at the i-th argument, as cuLaunchKernel does.
template <typename... A>
void launch(void (*fn)(A...), const unsigned* grid, const unsigned* block, bool cooperative, void** args) {
    run_grid({grid[0], grid[1], grid[2]}, {block[0], block[1], block[2]}, cooperative,
             [&] { call(fn, args, std::index_sequence_for<A...>{}); });
}

// One parameter's type, for checking what Python passes: kind is 'p' (pointer), 'f' (floating
// point) or 'i' (integer); for a pointer, the kind and size describe what it points to.
template <typename A>
void describe(char* kind, std::size_t* size, char* is_const) {
    using T = std::conditional_t<std::is_pointer_v<A>, std::remove_pointer_t<A>, A>;
    *kind = std::is_pointer_v<A> ? (std::is_floating_point_v<T> ? 'F' : 'I') : (std::is_floating_point_v<T> ? 'f' : 'i');
    *size = sizeof(T);
    *is_const = std::is_const_v<T>;
}

template <typename... A>
int signature(void (*)(A...), char* kinds, std::size_t* sizes, char* consts) {
    int i = 0;
    ((describe<A>(kinds + i, sizes + i, consts + i), ++i), ...);
    return i;
}

}  // namespace host_cuda
