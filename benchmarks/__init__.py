"""Benchmarks for flussfs: each reports ratios against a baseline measured side by side
(benchmarks/README.md). Tests never assert on timings; these scripts are where timings live."""
