"""Fine-tune a cross-encoder on training groups: seeded, checkpointed, resumable, evaluated as it goes.

The model is a Hugging Face ``AutoModelForSequenceClassification`` with one logit, tokenized by the
engine's own ``PairTokenizer`` so training sees exactly the truncation the engine applies at
inference (document cut, over-long query cut too). Every source of randomness is a function of
``(seed, step)``: the batch order (``examples.batches``) and dropout (``torch.manual_seed(seed + step)``),
so a run resumed from a checkpoint takes the very steps an uninterrupted run would have taken.
The result is saved as a checkpoint (safetensors) and exported to the engine's ONNX format.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from crossrank.checks import integer, number, output_dir
from crossrank.engine.export import transformers_quietly
from crossrank.errors import InputError, MissingDependencyError
from crossrank.train.examples import Group, batches
from crossrank.train.losses import distill, ranking_loss

log = logging.getLogger("crossrank.train")

CHECKPOINTS = "checkpoints"


@dataclass
class TrainConfig:
    """What a run is; saved beside the model so the model card can state its recipe."""

    base: str = "minilm-l6-untrained"
    loss: str = "listwise"
    distill_weight: float = 0.0  # weight of KL(teacher || student); 0 = labels only
    temperature: float = 1.0
    steps: int = 1000
    groups_per_step: int = 4
    lr: float = 3e-5
    warmup: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 256
    seed: int = 0
    checkpoint_every: int = 200
    eval_every: int = 0
    threads: int | None = None

    def check(self) -> None:
        """Every setting in range, or an InputError naming it: called before any data is built."""
        for name in ("steps", "groups_per_step", "max_length"):
            integer(getattr(self, name), name, minimum=1)
        integer(self.seed, "seed", minimum=-(2**63))  # any integer seeds Python's and torch's generators
        for name in ("checkpoint_every", "eval_every"):  # 0 = never
            integer(getattr(self, name), name)
        if self.threads is not None:
            integer(self.threads, "threads")  # 0 = torch's default
        number(self.lr, "lr", above=0)
        number(self.temperature, "temperature", above=0)
        number(self.warmup, "warmup", minimum=0, maximum=1)
        number(self.weight_decay, "weight_decay", minimum=0)
        number(self.distill_weight, "distill_weight", minimum=0)


@dataclass
class TrainResult:
    """Where the model went and how the run went: losses every step, evaluations, seconds."""

    out: Path
    steps: int
    losses: list[float] = field(default_factory=list)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0
    config: TrainConfig | None = None  # the recipe as run (max_length capped at what the base reads)


def _require_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("training", "torch", "train") from exc
    return torch


def _collate(tokenizer: Any, groups: Sequence[Group], torch: Any) -> dict[str, Any]:
    """One step's pairs, tokenized and padded exactly as the engine does at inference."""
    from crossrank.engine.batching import collate

    enc = tokenizer.encode([g.query for g in groups for _ in g.docs], [d for g in groups for d in g.docs])
    batch = collate(enc, np.arange(enc.rows), tokenizer.pad_id)
    return {"input_ids": torch.from_numpy(batch.input_ids), "token_type_ids": torch.from_numpy(batch.token_type_ids),
            "attention_mask": torch.from_numpy(batch.attention_mask)}


def _torch_seed(value: int) -> int:
    """``value`` as torch takes a seed (a 64-bit integer); any Python integer seeds the run."""
    return value if -(2**63) <= value < 2**64 else value % 2**64


def _head_labels(config: dict[str, Any]) -> int | None:
    """How many logits the base's sequence-classification head has, or None when it has no such head
    (an encoder only: training adds a one-logit head)."""
    if not any(str(a).endswith("ForSequenceClassification") for a in config.get("architectures") or []):
        return None
    return int(config.get("num_labels") or len(config.get("id2label") or {}) or 2)


def _lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then linear decay to zero: the schedule cross-encoder recipes use."""
    warm = max(1, int(config.warmup * config.steps))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (config.steps - step) / max(1, config.steps - warm))


def _checkpoints(out: Path) -> list[Path]:
    """Complete checkpoints under ``out``, oldest first (a half-written one has no ``state.pt``)."""
    root = out / CHECKPOINTS
    done = (p for p in root.glob("step-*") if (p / "state.pt").is_file()) if root.is_dir() else ()
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out``, if any."""
    done = _checkpoints(out)
    return done[-1] if done else None


def train(groups: Sequence[Group], out: Path, config: TrainConfig, *, resume: bool = False,
          evaluate: Callable[[Path], dict[str, Any]] | None = None,
          progress: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train on ``groups``, checkpointing into ``out/checkpoints`` and saving the final model in ``out``.

    ``evaluate(model_dir)`` is called every ``eval_every`` steps and at the end on a saved copy of
    the current weights; ``progress(step, running_loss)`` after every step.
    """
    torch = _require_torch()
    from transformers import AutoModelForSequenceClassification

    from crossrank.engine.model import position_limit, resolve
    from crossrank.engine.tokenize import PairTokenizer

    config.check()
    widths = sorted({len(g.docs) for g in groups})
    if config.groups_per_step > 1 and len(widths) > 1:  # found now, not hours in when two meet in a step
        raise InputError(f"training groups have {widths[0]} to {widths[-1]} candidates (a corpus too small for the "
                         "group size leaves some short); lower --group-size or use --groups-per-step 1")
    score_fn = ranking_loss(config.loss)
    if config.distill_weight and any(g.teacher is None for g in groups):
        raise InputError("distillation needs teacher scores on every group")
    out = output_dir(out, "output directory")
    if config.threads:
        torch.set_num_threads(config.threads)
    base = resolve(config.base)
    limit = position_limit(base.config)
    if config.max_length > limit:  # longer inputs would index past the position embeddings (a tensor-size crash)
        log.warning("%s reads at most %d tokens: training at %d, not %d", base.name, limit, limit, config.max_length)
        config = replace(config, max_length=limit)
    start = 0
    run = run_signature(config, groups)
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        _check_same_run(checkpoint, run)
    elif not resume:  # a new run: its checkpoints describe other weights
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    # A calibration left beside the weights was fitted on other weights (resumed runs too: these move on).
    (out / "calibration.json").unlink(missing_ok=True)
    labels = _head_labels(base.config)
    if labels not in (None, 1):  # transformers would fail on the head's shape with a traceback
        raise InputError(f"{config.base} has a {labels}-label classification head; training needs a one-logit "
                         "head (start from its encoder, or from a one-label cross-encoder)")
    source = checkpoint if checkpoint is not None else base.path
    torch.manual_seed(_torch_seed(config.seed))  # a base without a head gets a seeded one, not a random one
    with transformers_quietly():
        model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=1)
    tokenizer = PairTokenizer(base.tokenizer_file, config.max_length, model_name=base.name)
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "LayerNorm"))]
    rest = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "LayerNorm"))]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_at(s, config))
    result = TrainResult(out, config.steps, config=config)
    if checkpoint is not None:
        state = torch.load(checkpoint / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = int(state["step"])
        result.losses = [float(x) for x in state["losses"]]
        result.evaluations = json.loads((checkpoint / "evaluations.json").read_text())
        result.resumed_from = start
    t0 = time.perf_counter()
    model.train()
    for step, batch in enumerate(batches(groups, config.groups_per_step, config.steps, config.seed, start), start):
        width = len(batch[0].docs)  # one width per step: checked for all groups before step 0
        torch.manual_seed(_torch_seed(config.seed * 7919 + step))
        inputs = _collate(tokenizer, batch, torch)
        logits = model(**inputs).logits.view(len(batch), width)
        labels = torch.tensor([g.labels for g in batch], dtype=logits.dtype)
        loss = score_fn(logits, labels)
        if config.distill_weight:
            teacher = torch.tensor([g.teacher for g in batch], dtype=logits.dtype)
            loss = loss + config.distill_weight * distill(logits, teacher, config.temperature)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise InputError(f"the loss became {value} at step {step}: lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        result.losses.append(value)
        done = step + 1
        if progress:
            progress(done, float(np.mean(result.losses[-50:])))
        if evaluate and config.eval_every and done % config.eval_every == 0 and done < config.steps:
            result.evaluations.append({"step": done, **_evaluate(model, base.path, out, evaluate, config.max_length)})
            model.train()
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            _save_checkpoint(model, optimizer, scheduler, done, result, base.path, out, torch, config.max_length,
                             run)
    result.seconds = time.perf_counter() - t0
    model.eval()
    _save_model(model, base.path, out, config.max_length)
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=2))
    if evaluate:
        result.evaluations.append({"step": config.steps, **evaluate(out)})
    (out / "train_log.json").write_text(json.dumps(
        {"losses": result.losses, "evaluations": result.evaluations, "seconds": result.seconds,
         "resumed_from": result.resumed_from, "groups": len(groups)}, indent=1))
    return result


def _save_model(model: Any, base: Path, dst: Path, max_length: int | None = None) -> None:
    """A Hugging Face checkpoint the engine loads: safetensors weights, config, the base's tokenizer.

    ``model_max_length`` becomes the training length, so the engine scores at the length the model
    learned (longer inputs than it ever saw would change its scores and cost more).
    """
    dst.mkdir(parents=True, exist_ok=True)
    with transformers_quietly():  # its "Writing model shards" bar, under the run's own progress bar
        model.save_pretrained(str(dst), safe_serialization=True)
    for f in ("tokenizer.json", "special_tokens_map.json", "vocab.txt"):
        if (base / f).exists():
            shutil.copyfile(base / f, dst / f)
    tok_config = json.loads((base / "tokenizer_config.json").read_text()) if (base / "tokenizer_config.json"
                                                                               ).exists() else {}
    if max_length:
        tok_config["model_max_length"] = max_length
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))


def _evaluate(model: Any, base: Path, out: Path, evaluate: Callable[[Path], dict[str, Any]],
              max_length: int) -> dict[str, Any]:
    model.eval()
    snapshot = out / ".eval-snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    _save_model(model, base, snapshot, max_length)
    try:
        return evaluate(snapshot)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)


#: recipe fields a resumed run may change: how often it reports, not what it learns. Not ``steps``: the
#: learning-rate schedule decays to zero at the last step, so a run resumed with other steps would match
#: neither run its card says reproduces it.
RESUMABLE_CHANGES = ("checkpoint_every", "eval_every", "threads")


def run_signature(config: TrainConfig, groups: Sequence[Any]) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it: the recipe and the training data."""
    data = hashlib.sha256()
    for g in groups:
        data.update(json.dumps([g.query, list(g.docs), list(g.labels), g.teacher], default=float).encode())
    recipe = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}
    return {"recipe": recipe, "groups": len(groups), "data": data.hexdigest()[:20]}


def _check_same_run(checkpoint: Path, run: dict[str, Any]) -> None:
    path = checkpoint / "run.json"
    if not path.is_file():
        raise InputError(f"{checkpoint} does not say which recipe and data made it; start again without --resume")
    saved = json.loads(path.read_text())
    recipe = saved.get("recipe", {})
    if "steps" not in recipe:  # written before steps were part of the recipe: not comparable
        recipe = {**recipe, "steps": run["recipe"].get("steps")}
    changed = sorted(k for k in run["recipe"] if recipe.get(k) != run["recipe"][k])
    if changed:
        raise InputError(f"--resume: {checkpoint} was trained with other {', '.join(changed)}; "
                         "resume with the same recipe, or start again without --resume")
    if (saved.get("groups"), saved.get("data")) != (run["groups"], run["data"]):
        raise InputError(f"--resume: the training groups differ from those {checkpoint} was trained on "
                         "(other data, group size or seed); resume with the same data, or start again")


def _save_checkpoint(model: Any, optimizer: Any, scheduler: Any, step: int, result: TrainResult, base: Path,
                     out: Path, torch: Any, max_length: int, run: dict[str, Any]) -> None:
    """Write ``step-N`` under a temporary name and rename it: a crash never leaves a half checkpoint."""
    root = out / CHECKPOINTS
    tmp = root / f".step-{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    _save_model(model, base, tmp, max_length)
    (tmp / "run.json").write_text(json.dumps(run, indent=1))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "losses": torch.tensor(result.losses, dtype=torch.float64)}, tmp / "state.pt")
    (tmp / "evaluations.json").write_text(json.dumps(result.evaluations))
    final = root / f"step-{step}"
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in _checkpoints(out)[:-2]:  # the newest two are enough to resume
        shutil.rmtree(old, ignore_errors=True)
