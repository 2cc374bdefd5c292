"""Tiny judged collections in BEIR layout, written in temp dirs: a topic word makes a document relevant."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

TOPICS = ["crocs", "wing", "heat", "search", "running"]
FILLER = "the a of and to in is for on with model test data fast slow red blue green".split()


def write_collection(root: Path, seed: int, docs_per_topic: int = 6) -> Path:
    rng = random.Random(seed)
    (root / "qrels").mkdir(parents=True)
    corpus, qrels = [], []
    for t, topic in enumerate(TOPICS):
        for i in range(docs_per_topic):
            words = rng.sample(FILLER, 6) + [topic, topic]
            rng.shuffle(words)
            doc_id = f"{topic}-{i}"
            corpus.append({"_id": doc_id, "title": f"{topic} {rng.choice(FILLER)}", "text": " ".join(words)})
            if i < 3:
                qrels.append(f"q{t}\t{doc_id}\t{2 if i == 0 else 1}")
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps({"_id": f"q{t}", "text": f"{topic} best"})
                                                 for t, topic in enumerate(TOPICS)) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    return root


@pytest.fixture(scope="session")
def toy_collections(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two collections on the same topics with different documents: train on one, hold out the other."""
    return (write_collection(tmp_path_factory.mktemp("toy-a"), 1),
            write_collection(tmp_path_factory.mktemp("toy-b"), 2))
