"""The last encoder layer of a sequence classifier, computed for the one token the classifier reads.

A sequence classifier reads one vector: the first token's ([CLS] / ``<s>``) output of the last layer
(BERT's pooler, RoBERTa/XLM-R/ELECTRA's head: ``hidden[:, 0]``). Every other position of the last layer
is computed and thrown away: its queries, attention output and feed-forward pass, about 5/6 of that
layer's multiply-adds. Here the last layer attends from the first token only (keys and values still come
from every token), so its output is exactly the first token's row: ~14% of a 6-layer MiniLM's work.

Used by the ONNX export and the PyTorch backend alike; built only for BERT-structured layers, and used
only when it reproduces the unmodified model's logits on padded inputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _first_token_layer(layer: Any, as_tuple: bool) -> Any | None:
    """A module replacing ``layer`` (a tuple-returning one, as transformers 4 layers are, when ``as_tuple``);
    None when ``layer`` lacks BERT's structure."""
    import torch

    attention = getattr(layer, "attention", None)
    sa = getattr(attention, "self", None)
    needed = (sa, getattr(attention, "output", None), getattr(layer, "intermediate", None),
              getattr(layer, "output", None))
    if sa is None or any(x is None for x in needed) or not all(
            hasattr(sa, a) for a in ("query", "key", "value", "num_attention_heads", "attention_head_size")):
        return None
    if getattr(sa, "position_embedding_type", "absolute") not in (None, "absolute"):
        return None

    heads, size = int(sa.num_attention_heads), int(sa.attention_head_size)
    # One column per head over the hidden units: per-head sums and broadcasts become one small constant
    # MatMul each, so the exported graph needs no head reshapes (each a chain of shape ops that costs
    # more than this layer's arithmetic on a one-title batch).
    blocks = torch.repeat_interleave(torch.eye(heads), size, dim=0)  # (hidden, heads)

    class FirstToken(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = layer  # keeps the layer's weights in the model (moved and cast with it)
            self.register_buffer("blocks", blocks, persistent=False)

        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):  # type: ignore[no-untyped-def]
            first = hidden_states[:, :1]  # (B, 1, H)
            q, k, v = sa.query(first), sa.key(hidden_states), sa.value(hidden_states)
            scores = torch.matmul(q * k, self.blocks) * (size ** -0.5)  # (B, T, heads)
            if attention_mask is not None:  # (B, 1, 1 or T, T): the first query's row
                row = attention_mask[:, 0, :1, :].transpose(1, 2)
                if row.dtype == torch.bool:  # SDPA's form: True where attending
                    scores = scores.masked_fill(~row, torch.finfo(scores.dtype).min)
                else:  # eager's form: added to the scores
                    scores = scores + row
            weights = torch.matmul(scores.softmax(1), self.blocks.t())  # (B, T, H)
            context = (weights * v).sum(1, keepdim=True)  # (B, 1, H)
            attended = attention.output(context, first)
            out = layer.output(layer.intermediate(attended), attended)
            return (out,) if as_tuple else out

    return FirstToken()


def _check_inputs(tokenizer_file: Path, token_type_ids: bool) -> dict[str, Any]:
    """Two pairs of different lengths, one padded, so the masked path is compared too."""
    import torch
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_padding()
    tok.no_truncation()
    short = tok.encode("a query", "a document to score")
    long = tok.encode("a longer query about heat transfer", "a document to score, with a few more words in it")
    width = len(long.ids)
    ids = torch.zeros(2, width, dtype=torch.long)
    ids[0, : len(short.ids)] = torch.tensor(short.ids)
    ids[1] = torch.tensor(long.ids)
    feed = {"input_ids": ids,
            "attention_mask": (torch.arange(width)[None, :] < torch.tensor([[len(short.ids)], [width]])).long()}
    if token_type_ids:
        types = torch.zeros_like(ids)
        types[0, : len(short.ids)] = torch.tensor(short.type_ids)
        types[1] = torch.tensor(long.type_ids)
        feed["token_type_ids"] = types
    return feed


def _swap_in(hf: Any, feed: dict[str, Any]) -> bool:
    """Replace ``hf``'s last layer if the replacement scores ``feed`` exactly as before; say whether."""
    import torch

    base = getattr(hf, getattr(hf, "base_model_prefix", ""), None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers) or getattr(hf.config, "is_decoder", False):
        return False
    original = layers[-1]
    with torch.inference_mode():
        expected = hf(**feed).logits
        for as_tuple in (False, True):  # transformers 5 layers return a tensor, 4.x a tuple
            wrapped = _first_token_layer(original, as_tuple)
            if wrapped is None:
                return False
            layers[-1] = wrapped
            same = False
            try:
                got = hf(**feed).logits
                same = got.shape == expected.shape and bool(torch.allclose(got, expected, atol=1e-5, rtol=1e-4))
            except Exception:  # noqa: BLE001 - a layer this does not fit
                same = False
            finally:
                if not same:  # never leave an unverified layer in the model
                    layers[-1] = original
            if same:
                return True
    log.info("first-token last layer does not reproduce %s's logits; computing every position", type(hf).__name__)
    return False


def first_token_last_layer(hf: Any, tokenizer_file: Path, *, token_type_ids: bool, name: str = "") -> bool:
    """Put the first-token last layer into ``hf`` (fp32, on CPU) if it reproduces its logits; say whether.

    ``token_type_ids``: whether the model reads segment ids. Never raises: it is an optimization, and any
    surprise (no tokenizer file, an architecture it does not fit) leaves the model as it was.
    """
    try:
        return _swap_in(hf, _check_inputs(tokenizer_file, token_type_ids))
    except Exception as exc:  # noqa: BLE001
        log.info("first-token last layer not applied to %s: %s", name or type(hf).__name__, exc)
        return False
