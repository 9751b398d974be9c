"""Stand-ins for outside services, for tests and benchmarks of recycle-workers."""
