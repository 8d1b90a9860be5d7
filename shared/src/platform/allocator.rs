//! The allocator of every binary that links this crate (the functions, `berth`, the agent,
//! and the benches, which so measure what ships): mimalloc, for its per-thread heaps. A
//! release's fan-out allocates for every request of every host, and glibc's allocator spent
//! 15% of its CPU there, with futex waits between the runtime's workers; see
//! docs/benchmarks.md ("sixth pass") for what mimalloc changed, CPU and peak RSS.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
