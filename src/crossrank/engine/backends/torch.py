"""PyTorch backend: CUDA in fp16/bf16 when a GPU is present, fp32 on CPU otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossrank.engine.export import load_classifier, uses_token_type_ids
from crossrank.engine.first_token import first_token_last_layer
from crossrank.errors import BackendError, MissingDependencyError, ModelLoadError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchBackend:
    """Runs a Hugging Face ``AutoModelForSequenceClassification``.

    Weights load from safetensors when the checkpoint has them; ``.bin`` files go through
    transformers, which reads them with ``torch.load(weights_only=True)``.
    """

    name = "torch"

    def __init__(self, path: Path, *, threads: int, device: str | None = None,
                 precision: str | None = None, model_name: str = "") -> None:
        try:
            import torch
            import transformers  # noqa: F401
        except ImportError as exc:
            raise MissingDependencyError("the torch backend", "torch", "torch") from exc
        self._torch = torch
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(model_name or str(path), f"device {device!r} asked for but CUDA is not available")
        if precision is None:
            precision = "fp32" if device == "cpu" else (
                "bf16" if torch.cuda.is_bf16_supported() else "fp16")
        if precision not in DTYPES:
            raise ModelLoadError(model_name or str(path), f"unknown precision {precision!r} for torch")
        if device == "cpu":
            torch.set_num_threads(threads)
        model = load_classifier(path, model_name or str(path), dtype=torch.float32)
        self.uses_token_type_ids = uses_token_type_ids(model)
        # Verified in fp32 on the CPU, then cast: the last layer computes only the token the head reads.
        self.first_token_last_layer = first_token_last_layer(
            model, path / "tokenizer.json", token_type_ids=self.uses_token_type_ids, name=model_name)
        self.model = model.to(device=device, dtype=getattr(torch, DTYPES[precision])).eval()
        self.device = str(device)
        self.precision = precision

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray) -> np.ndarray:
        torch = self._torch
        feed = {
            "input_ids": torch.from_numpy(input_ids).to(self.device),
            "attention_mask": torch.from_numpy(attention_mask).to(self.device),
        }
        if self.uses_token_type_ids:
            feed["token_type_ids"] = torch.from_numpy(token_type_ids).to(self.device)
        try:
            with torch.inference_mode():
                logits = self.model(**feed).logits
        except Exception as exc:  # noqa: BLE001 - CUDA OOM and friends
            raise BackendError(f"torch failed on a batch of shape {tuple(input_ids.shape)}: {exc}") from exc
        return logits.float().cpu().numpy().reshape(len(input_ids), -1)
