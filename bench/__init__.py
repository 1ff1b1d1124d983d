"""Benchmarks: every performance figure printed beside a baseline measured in the same run."""
