//! glibc malloc settings for a long-running process whose heap is mostly a
//! cache built once and then changed a little at a time.
//!
//! glibc gives each thread that allocates under contention an arena of its
//! own, and keeps what is freed inside each arena for reuse. The initial
//! lists (pages of decoded objects, freed as soon as they are converted)
//! then leave free memory scattered over several arenas, between the cached
//! objects, which the process keeps resident. One arena, and handing free
//! pages back after each snapshot rebuild, keeps RSS near the live heap
//! (measured in BENCHMARKS.md, "Where the rest of the memory went"). Other C libraries:
//! nothing to do.

/// Arenas when `MALLOC_ARENA_MAX` is not set. The runtime has a handful of
/// threads; with glibc's per-thread caches they rarely wait on one arena.
pub const ARENAS: i32 = 1;

/// Caps glibc's arenas at [`ARENAS`] unless the operator set
/// `MALLOC_ARENA_MAX` (glibc reads it itself). Call before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator parameters; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        }
    }
}

/// Returns the free pages of every arena to the kernel.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe (it locks each arena in turn).
    unsafe {
        libc::malloc_trim(0);
    }
}
