"""Benchmarks behind `tools/bench.py`: each prints figures side by side with a peer, measured in one run."""
