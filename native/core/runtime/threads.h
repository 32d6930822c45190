// CPU threads (issue 17, item 3). libtorch's intra-op thread count is OpenMP's nthreads ICV, which
// belongs to each thread: at::set_num_threads on the thread that loaded a pipeline does not reach a
// libuv worker that already ran a parallel region, so a later `threads` option would not apply
// there. OpenBLAS keeps a process-wide pool of its own, sized to all cores, which
// at::set_num_threads leaves alone (it sets MKL's, not OpenBLAS's).
#pragma once

namespace sd::runtime {

/// Makes the calling thread run libtorch's CPU kernels on `n` threads (at::set_num_threads, once per
/// thread and count: a thread_local remembers what was applied, so calling it at every pipeline call
/// is free) and sizes OpenBLAS's pool to `n` too when OpenBLAS is loaded (openblas_set_num_threads,
/// found with dlopen(RTLD_NOLOAD); process-wide: the last pipeline call's count wins). n <= 0: no-op.
void useIntraOpThreads(int n);

/// OpenBLAS's thread count (openblas_get_num_threads), or -1 when OpenBLAS is not loaded.
int openBlasThreads();

}  // namespace sd::runtime
