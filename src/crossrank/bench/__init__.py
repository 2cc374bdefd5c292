"""Benchmarks that run a peer and crossrank side by side in one process and print ratios."""
