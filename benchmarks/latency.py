"""Run: HF_HUB_OFFLINE=1 python benchmarks/latency.py [--model M] [--repeats N] [--no-peer] [--corpus FILE]

The same as ``crossrank bench`` (this script runs that command): sentence-transformers CrossEncoder
(torch, CPU) and crossrank's ONNX fp32/int8 paths on the same checkpoint (default: the built-in MiniLM-L6
architecture), one query against 1/10/100 titles and passages; p50/p90 ms, ratio to the peer, GFLOP/s.
"""

import sys

from crossrank.cli.app import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]], prog_name="benchmarks/latency.py")
