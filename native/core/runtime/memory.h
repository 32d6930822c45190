// Giving freed memory back to the operating system (issue 19, item 4). glibc keeps the memory of
// freed weights in its arenas: 5 load/dispose cycles of a full-size SD 1.5 grew RSS 275 → 5,128 MiB
// after dispose. malloc_trim(0) returns every free page of every arena (glibc ≥ 2.8: also pages in
// the middle of a heap, by madvise), so a server that swaps models stays bounded.
#pragma once

namespace sd::runtime {

/// Asks the C allocator to return freed memory to the OS: glibc's malloc_trim(0), run on a
/// background thread (it walks all arenas: milliseconds to a few hundred ms after a large free,
/// which must not block the caller — the N-API thread). At most one trim runs at a time; a request
/// while one runs makes it run once more. No-op where the C library is not glibc.
void releaseFreedMemory();

/// The same, on the calling thread, returning once done (tests, tools). True where it trimmed.
bool releaseFreedMemoryNow();

}  // namespace sd::runtime
