//! Benchmarks of tend (filled in by `bench/README.md`'s programs).

fn main() {}
