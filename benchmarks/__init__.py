"""Performance benchmarks for Sluice, each with its own runner (never timed asserts in tests)."""
