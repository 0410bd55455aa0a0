"""Benchmarks: side-by-side timings of dense and compiled models, written as JSON."""
