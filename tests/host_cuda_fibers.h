// Fibers for tests/host_cuda.h: the threads of a block that calls __syncthreads() run
// as fibers of one OS thread, switched at each barrier -- a few nanoseconds a switch,
// where one OS thread per CUDA thread costs the scheduler microseconds per barrier
// (the attention kernels' 128 threads on 2 cores: 100x slower).
//
// A fiber is a stack and a saved stack pointer. switch_to() pushes the callee-saved
// registers on the current stack, stores the stack pointer, loads the other fiber's and
// pops its registers: the System V x86-64 calling convention leaves nothing else to keep.
// The scheduler resumes each live thread of the block in turn; a thread runs until its
// next __syncthreads() (it switches back) or its end. Every thread reaching the barrier
// before any passes it is what CUDA's barrier means, so one round per barrier is exact.
// Each stack has an inaccessible guard page below it: an overflow faults, never corrupts.
// Under AddressSanitizer every switch is announced to it (start_switch before, finish_switch
// after), or it would take a fiber's stack for a corrupted one. x86-64 only: elsewhere
// host_cuda.h runs one OS thread per CUDA thread.

#include <sys/mman.h>

#include <cstdlib>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace host_cuda::fibers {

extern "C" void host_cuda_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl host_cuda_switch
    .type host_cuda_switch, @function
host_cuda_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size host_cuda_switch, .-host_cuda_switch
)");

constexpr std::size_t STACK = 256 * 1024, GUARD = 4096;

inline void* scheduler_sp = nullptr;
inline std::vector<void*> fiber_sp;          // saved stack pointer of each thread of the block
inline std::vector<char*> stacks;            // kept from launch to launch
inline std::vector<bool> done;
inline unsigned current = 0;
inline void (*body)(void*) = nullptr;
inline void* body_context = nullptr;

inline const void* main_bottom = nullptr;  // the scheduler's stack, as AddressSanitizer reports it
inline std::size_t main_size = 0;

// Tell AddressSanitizer which stack the next switch goes to (save: where it keeps this stack's fake
// frames; nullptr when this stack is done), and, once there, that the switch happened.
inline void start_switch(void** save, const void* bottom, std::size_t size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(save, bottom, size);
#else
    (void)save, (void)bottom, (void)size;
#endif
}

inline void finish_switch(void* save, const void** bottom_old, std::size_t* size_old) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(save, bottom_old, size_old);
#else
    (void)save, (void)bottom_old, (void)size_old;
#endif
}

[[noreturn]] inline void entry() {
    finish_switch(nullptr, &main_bottom, &main_size);  // arrived from the scheduler's stack
    body(body_context);
    done[current] = true;
    start_switch(nullptr, main_bottom, main_size);
    host_cuda_switch(&fiber_sp[current], scheduler_sp);
    std::abort();  // a finished fiber is never resumed
}

// A fresh stack whose first switch "returns" into entry(), aligned as a called function expects.
inline void* start(char* stack) {
    auto** sp = reinterpret_cast<void**>(stack + GUARD + STACK);
    *--sp = nullptr;                                   // entry()'s return address: never used
    *--sp = reinterpret_cast<void*>(&entry);           // where host_cuda_switch's ret goes
    for (int i = 0; i < 6; ++i) *--sp = nullptr;       // rbp, rbx, r12-r15
    return sp;
}

inline void sync() {
    void* save = nullptr;
    start_switch(&save, main_bottom, main_size);
    host_cuda_switch(&fiber_sp[current], scheduler_sp);
    finish_switch(save, nullptr, nullptr);  // resumed
}

// Runs body(context) once per thread of one block, switching at every sync().
template <typename SetThread>
void run_block(unsigned threads, void (*fn)(void*), void* context, SetThread set_thread) {
    while (stacks.size() < threads) {
        void* memory = mmap(nullptr, GUARD + STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (memory == MAP_FAILED) std::abort();
        mprotect(memory, GUARD, PROT_NONE);
        stacks.push_back(static_cast<char*>(memory));
    }
    body = fn;
    body_context = context;
    fiber_sp.assign(threads, nullptr);
    done.assign(threads, false);
    for (unsigned t = 0; t < threads; ++t) {
#if defined(__SANITIZE_ADDRESS__)
        __asan_unpoison_memory_region(stacks[t] + GUARD, STACK);  // no stale poison from the last block's frames
#endif
        fiber_sp[t] = start(stacks[t]);
    }
    for (unsigned live = threads; live > 0;) {  // one round per barrier
        live = 0;
        for (unsigned t = 0; t < threads; ++t) {
            if (done[t]) continue;
            current = t;
            set_thread(t);
            void* save = nullptr;
            start_switch(&save, stacks[t] + GUARD, STACK);
            host_cuda_switch(&scheduler_sp, fiber_sp[t]);
            finish_switch(save, nullptr, nullptr);
            live += !done[t];
        }
    }
}

}  // namespace host_cuda::fibers
