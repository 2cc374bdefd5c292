"""Runtimes behind one small protocol.

A backend turns one padded batch into logits; it knows nothing of queries, documents,
activations or ordering. ``load_backend`` picks one by name, importing its runtime lazily.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

BACKENDS = ("onnx", "torch")


@runtime_checkable
class Backend(Protocol):
    """What the engine needs from a runtime."""

    name: str
    #: "fp32", "int8", "fp16" or "bf16"
    precision: str
    #: the device it runs on ("cpu", "cuda:0")
    device: str
    #: whether the model takes token_type_ids
    uses_token_type_ids: bool

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray) -> np.ndarray:
        """Logits of shape (rows, num_labels), float32."""
        ...


def cuda_available() -> bool:
    """True when PyTorch is installed and sees a CUDA device (without importing torch otherwise)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def auto_backend() -> str:
    """Torch on a GPU when one is present, ONNX Runtime on CPU otherwise."""
    return "torch" if cuda_available() else "onnx"
