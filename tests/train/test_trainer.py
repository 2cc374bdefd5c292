"""The trainer on a tiny BERT: it learns, it is seeded, a resumed run equals an uninterrupted one,
and what it saves loads in the engine with the scores torch gives."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from crossrank.errors import InputError
from crossrank.train import Group, TrainConfig, train
from crossrank.train.trainer import latest_checkpoint

pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors.numpy")

TOPICS = ["crocs", "wing", "heat", "search", "running", "lift", "flow", "clog"]
FILLER = "the a of and to in is for on with model test data fast slow red blue green".split()


def toy_groups(n: int = 24, seed: int = 0) -> list[Group]:
    """The positive contains the query's topic word; the negatives contain other topics."""
    rng = random.Random(seed)
    groups = []
    for _ in range(n):
        topic, *others = rng.sample(TOPICS, 4)
        docs = [" ".join(rng.sample(FILLER, 4) + [t]) for t in (topic, *others)]
        groups.append(Group(f"{topic} best", docs, [1.0, 0.0, 0.0, 0.0], [0.0, -1.0, -1.5, -2.0]))
    return groups


def weights(path):
    return safetensors.load_file(str(path / "model.safetensors"))


def config(**kw):
    base = {"steps": 6, "groups_per_step": 4, "lr": 1e-3, "max_length": 32, "checkpoint_every": 3, "threads": 1}
    return TrainConfig(**{**base, **kw})


def test_it_learns_the_toy_task(tiny_model, tmp_path):
    result = train(toy_groups(), tmp_path / "m", config(base=str(tiny_model), steps=60, lr=5e-3, checkpoint_every=0))
    assert np.mean(result.losses[-10:]) < 0.6 * np.mean(result.losses[:10])
    log = json.loads((tmp_path / "m" / "train_log.json").read_text())
    assert len(log["losses"]) == 60 and (tmp_path / "m" / "train_config.json").is_file()


def test_seeded_and_resumable(tiny_model, tmp_path):
    groups = toy_groups()
    a = train(groups, tmp_path / "a", config(base=str(tiny_model), distill_weight=0.5, loss="pairwise"))

    class Stop(Exception):
        pass

    def crash(step, _loss):
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train(groups, tmp_path / "b", config(base=str(tiny_model), distill_weight=0.5, loss="pairwise"),
              progress=crash)
    assert latest_checkpoint(tmp_path / "b").name == "step-3"
    b = train(groups, tmp_path / "b", config(base=str(tiny_model), distill_weight=0.5, loss="pairwise"),
              resume=True)
    assert b.resumed_from == 3 and len(b.losses) == 6
    np.testing.assert_allclose(b.losses, a.losses, rtol=1e-5)
    wa, wb = weights(tmp_path / "a"), weights(tmp_path / "b")
    for name in wa:
        np.testing.assert_allclose(wa[name], wb[name], atol=1e-6, err_msg=name)
    c = train(groups, tmp_path / "c", config(base=str(tiny_model), distill_weight=0.5, loss="pairwise", seed=1))
    assert c.losses != a.losses


def test_resume_refuses_another_recipe_or_data_and_a_new_run_clears_the_old(tiny_model, tmp_path):
    class Stop(Exception):
        pass

    def crash(step, _loss):
        if step == 4:
            raise Stop

    out = tmp_path / "m"
    with pytest.raises(Stop):
        train(toy_groups(), out, config(base=str(tiny_model)), progress=crash)
    with pytest.raises(InputError, match="other loss, lr"):
        train(toy_groups(), out, config(base=str(tiny_model), loss="pointwise", lr=5e-3), resume=True)
    with pytest.raises(InputError, match="training groups differ"):
        train(toy_groups(seed=3), out, config(base=str(tiny_model)), resume=True)
    # Other steps: the schedule decays to zero at the last step, so neither run would be reproduced.
    with pytest.raises(InputError, match="other steps"):
        train(toy_groups(), out, config(base=str(tiny_model), steps=8), resume=True)
    (out / "calibration.json").write_text('{"method": "platt", "params": {"a": 1.0, "b": 0.0}}')
    resumed = train(toy_groups(), out, config(base=str(tiny_model), threads=2), resume=True)
    assert resumed.resumed_from == 3 and len(resumed.losses) == 6
    assert not (out / "calibration.json").exists()  # fitted on the weights this run moved on from
    (out / "calibration.json").write_text('{"method": "platt", "params": {"a": 1.0, "b": 0.0}}')
    train(toy_groups(), out, config(base=str(tiny_model), seed=5, checkpoint_every=0))  # a new run, same place
    assert not (out / "calibration.json").exists() and latest_checkpoint(out) is None


def test_saved_model_scores_alike_in_torch_and_onnx(tiny_model, tmp_path):
    from crossrank import CrossEncoder
    from crossrank.train.recipe import export_trained

    out = tmp_path / "m"
    train(toy_groups(8), out, config(base=str(tiny_model), steps=3, checkpoint_every=0))
    onnx_dir = export_trained(out, None)
    pairs = [("crocs best", "the crocs red"), ("wing best", "a heat model"), ("flow", "flow flow data")]
    torch_scores = CrossEncoder(str(out), backend="torch").score(pairs)
    onnx_scores = CrossEncoder(str(onnx_dir), backend="onnx").score(pairs)
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-4)


def test_bad_setups_are_input_errors(tiny_model, tmp_path):
    groups = toy_groups(4)
    with pytest.raises(InputError, match="unknown loss"):
        train(groups, tmp_path / "x", config(base=str(tiny_model), loss="nope"))
    no_teacher = [Group(g.query, g.docs, g.labels) for g in groups]
    with pytest.raises(InputError, match="teacher"):
        train(no_teacher, tmp_path / "x", config(base=str(tiny_model), distill_weight=1.0))
    with pytest.raises(InputError, match="steps"):
        train(groups, tmp_path / "x", config(base=str(tiny_model), steps=0))
    for bad in ({"lr": -1.0}, {"lr": float("nan")}, {"warmup": 2.0}, {"temperature": 0.0},
                {"threads": -1}, {"checkpoint_every": -1}, {"eval_every": -1}):
        with pytest.raises(InputError, match=next(iter(bad))):
            train(groups, tmp_path / "x", config(base=str(tiny_model), **bad))
    TrainConfig(seed=-1).check()  # any integer seeds the generators
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        train(groups, tmp_path / "a-file", config(base=str(tiny_model)))
    short = [*groups[:2], Group(groups[2].query, groups[2].docs[:2], groups[2].labels[:2])]
    with pytest.raises(InputError, match="--group-size"):
        train(short, tmp_path / "x", config(base=str(tiny_model), groups_per_step=2))


def test_a_max_length_past_the_position_embeddings_trains_at_the_models_limit(tiny_model, tmp_path):
    """The default 256 on a model with 64 positions was a tensor-size RuntimeError at the first long group."""
    long_groups = [Group(g.query, [d + " " + " ".join(FILLER * 8) for d in g.docs], g.labels, g.teacher)
                   for g in toy_groups(8)]
    result = train(long_groups, tmp_path / "m", config(base=str(tiny_model), steps=2, max_length=256,
                                                       checkpoint_every=0))
    assert len(result.losses) == 2 and all(np.isfinite(result.losses))
    saved = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    assert saved["model_max_length"] == 64
    assert result.config.max_length == 64  # what the model card shows: the length trained at


def _variant(tiny_model, out, cls_name: str, **config):
    """The tiny model's encoder saved as another architecture (no head, or a two-label head)."""
    import shutil

    import transformers

    shutil.copytree(tiny_model, out)
    cfg = transformers.AutoConfig.from_pretrained(str(tiny_model), **config)
    model = getattr(transformers, cls_name).from_pretrained(str(tiny_model), config=cfg, ignore_mismatched_sizes=True)
    for f in out.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(str(out))
    return out


def test_a_base_without_a_head_trains_reproducibly_and_a_two_label_one_is_refused(tiny_model, tmp_path):
    nohead = _variant(tiny_model, tmp_path / "nohead", "BertModel")
    runs = [train(toy_groups(4), tmp_path / f"h{i}", config(base=str(nohead), steps=2, checkpoint_every=0))
            for i in range(2)]
    assert runs[0].losses == runs[1].losses  # the new head is drawn from the seed, not torch's global state
    two = _variant(tiny_model, tmp_path / "two", "BertForSequenceClassification", num_labels=2)
    with pytest.raises(InputError, match="2-label classification head"):
        train(toy_groups(4), tmp_path / "t", config(base=str(two), steps=2, checkpoint_every=0))


def test_any_integer_seeds_a_run(tiny_model, tmp_path):
    result = train(toy_groups(4), tmp_path / "s", config(base=str(tiny_model), steps=2, checkpoint_every=0,
                                                         seed=2**61))
    assert len(result.losses) == 2
