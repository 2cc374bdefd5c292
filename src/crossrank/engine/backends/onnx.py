"""ONNX Runtime backend: the default on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossrank.errors import BackendError, ModelLoadError


class OnnxBackend:
    """Runs an exported graph with one ``InferenceSession``.

    ``threads`` is the intra-op pool: one thread per physical core is the sweet spot for
    the GEMM-bound encoder; more only contend with the tokenizer and the server.
    """

    name = "onnx"

    def __init__(self, path: Path, *, threads: int, precision: str = "fp32", model_name: str = "",
                 providers: list[str] | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Spin between a run's parallel sections (fast), but not after it returns: idle threads that
        # keep spinning steal the cores from whatever runs next in this process — another model of a
        # cascade or a server, the bi-encoder, the tokenizer. Two models used in turn, 10 titles each:
        # 134-154 ms with ORT's default, 73-76 ms with this, one model alone unchanged (docs/benchmarks.md).
        opts.add_session_config_entry("session.force_spinning_stop", "1")
        if not path.exists():
            raise ModelLoadError(model_name or str(path), f"{path} does not exist")
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as exc:  # noqa: BLE001 - ORT raises its own untyped errors
            raise ModelLoadError(model_name or str(path), f"{path} is not a valid ONNX model: {exc}") from exc
        self.input_names = {i.name for i in self.session.get_inputs()}
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise ModelLoadError(model_name or str(path), f"{path} lacks inputs {sorted(missing)}")
        self.uses_token_type_ids = "token_type_ids" in self.input_names
        self.output_name = self.session.get_outputs()[0].name
        self.precision = precision
        self.device = "cpu"

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray,
            token_type_ids: np.ndarray) -> np.ndarray:
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            feed["token_type_ids"] = token_type_ids
        try:
            (logits,) = self.session.run([self.output_name], feed)
        except Exception as exc:  # noqa: BLE001
            raise BackendError(f"onnxruntime failed on a batch of shape {input_ids.shape}: {exc}") from exc
        return np.asarray(logits, dtype=np.float32).reshape(len(input_ids), -1)
