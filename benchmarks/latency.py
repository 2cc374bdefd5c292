"""Run: python benchmarks/latency.py [MODEL]  (default: the built-in MiniLM-L6 architecture).

sentence-transformers CrossEncoder (torch, CPU) and crossrank's ONNX fp32/int8 paths on the same
checkpoint, one query against 1/10/100 titles and passages; p50/p90 ms, ratio to the peer, GFLOP/s.
"""

import sys

from crossrank.bench.latency import run

if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else None)
