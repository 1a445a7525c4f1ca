"""PyTorch-side helpers for crossmax's parity tests and benchmarks (run with Debian's python3-torch)."""
