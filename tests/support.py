"""Helpers for tests: small review data written by the tests themselves, free loopback ports.

The reviews are varied enough that validation passes (unique, balanced, realistic lengths) and a
real model can learn them, but they are synthetic: no test depends on ../shared.
"""

from __future__ import annotations

import json
import random
import socket
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
# What an MLflow project needs to run (anything else in the repo is not copied).
PROJECT_FILES = ("MLproject", "conda.yaml", "params.yaml", "steps", "pyfunc", "expectations")

_POSITIVE = [
    "wonderful",
    "brilliant",
    "moving",
    "superb",
    "delightful",
    "excellent",
    "great",
    "touching",
    "funny",
    "gripping",
    "beautiful",
    "masterful",
    "charming",
    "memorable",
]
_NEGATIVE = [
    "awful",
    "boring",
    "terrible",
    "dull",
    "clumsy",
    "dreadful",
    "bad",
    "tedious",
    "pointless",
    "horrible",
    "lifeless",
    "predictable",
    "weak",
    "painful",
]
_NEUTRAL = [
    "the plot",
    "the acting",
    "the script",
    "the ending",
    "the soundtrack",
    "the director",
    "the cast",
    "the pacing",
    "the dialogue",
    "the camera work",
    "the story",
    "the lead actor",
]
_TEMPLATES = [
    "I thought {n} was {a}.",
    "Honestly, {n} felt {a} from start to finish.",
    "{N} is {a}, and {n2} is {a2} too.",
    "What a {a} film; {n} was {a2}.<br /><br />Would say the same again.",
    "My friends found {n} {a}, and I agree: {a2}!",
]


def make_reviews(n: int, seed: int = 0, positive_share: float = 0.5) -> pd.DataFrame:
    """`n` unique labelled reviews (columns review, sentiment) with the given positive share."""
    rng = random.Random(seed)
    rows, seen = [], set()
    n_pos = round(n * positive_share)
    while len(rows) < n:
        label = "positive" if len(rows) < n_pos else "negative"
        words = _POSITIVE if label == "positive" else _NEGATIVE
        text = rng.choice(_TEMPLATES).format(
            n=rng.choice(_NEUTRAL),
            N=rng.choice(_NEUTRAL).capitalize(),
            n2=rng.choice(_NEUTRAL),
            a=rng.choice(words),
            a2=rng.choice(words),
        )
        text = f"{text} Review #{len(rows)} of {rng.randint(1, 10**6)}."
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    frame = pd.DataFrame(rows, columns=["review", "sentiment"])
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_aclimdb(root: Path, splits: Mapping[str, pd.DataFrame]) -> Path:
    """Write reviews in the official layout `root/aclImdb/<split>/{pos,neg}/<id>_<rating>.txt`.

    Ids count from 0 within each label folder. Also writes what readers must ignore (unsup/,
    *.feat, urls_*.txt, imdb.vocab). Returns `root/aclImdb`.
    """
    acl = Path(root) / "aclImdb"
    for split, frame in splits.items():
        for folder, rating, label in (("pos", 8, "positive"), ("neg", 3, "negative")):
            target = acl / split / folder
            target.mkdir(parents=True, exist_ok=True)
            texts = frame.loc[frame["sentiment"] == label, "review"]
            for review_id, text in enumerate(texts):
                (target / f"{review_id}_{rating}.txt").write_bytes(text.encode("utf-8"))
            (acl / split / f"urls_{folder}.txt").write_text("http://www.imdb.com/title/tt0/\n")
        (acl / split / "labeledBow.feat").write_text("9 0:9 1:1\n")
        (acl / split / "unsup").mkdir(exist_ok=True)
        (acl / split / "unsup" / "0_0.txt").write_text("An unlabelled review, to be ignored.")
    (acl / "imdb.vocab").write_text("the\nand\n")
    return acl


def write_aclimdb_tar(path: Path, splits: Mapping[str, pd.DataFrame]) -> Path:
    """`write_aclimdb` packed as a .tar.gz (members under aclImdb/, like aclImdb_v1.tar.gz)."""
    path = Path(path)
    staging = path.parent / f"{path.name}.staging"
    acl = write_aclimdb(staging, splits)
    with tarfile.open(path, "w:gz") as archive:
        archive.add(acl, arcname="aclImdb")
    return path


def aclimdb_order(frame: pd.DataFrame) -> pd.DataFrame:
    """A split as the aclImdb readers return it: positives, then negatives, each in order."""
    parts = [frame[frame["sentiment"] == label] for label in ("positive", "negative")]
    return pd.concat(parts, ignore_index=True)


def write_ingested(folder: Path, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    """What ingest leaves behind (two Parquet splits and their manifest), written directly.

    Splits may be broken on purpose (a missing column, nulls); their manifest then carries a
    content hash of "unhashable".
    """
    from steps.data.dataset import Manifest, content_hash

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"train": train, "test": test}
    for split, frame in frames.items():
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    try:
        digest = content_hash([train, test])
    except (KeyError, AttributeError, TypeError):
        digest = "unhashable"
    manifest = Manifest(
        source="written by the test",
        content_sha256=digest,
        rows={split: len(frame) for split, frame in frames.items()},
        positives={
            split: int(frame.get("sentiment", pd.Series()).eq("positive").sum())
            for split, frame in frames.items()
        },
        test_split="source",
    )
    (folder / "manifest.json").write_text(json.dumps(manifest.to_dict()), encoding="utf-8")
    return folder
