"""Benchmarks: scripts that print figures with n runs (`python -m study.bench.heads`, `.epoch`, `.eval`)."""
