"""The training profile: what `monitor` compares a batch of reviews with, shipped in every model.

`train` builds it from the validation split, scored by the model fitted without it (so scores and
unseen tokens are those of reviews the model has not seen, as in production), and logs it inside
the model as the artifact `profile` (pyfunc.contract.PROFILE_ARTIFACT): whoever has the model, from
the registry, a run or models/model, has its profile. About 60 KB: a sample of the validation
split's review lengths and scores for the two-sample test and PSI, plus one number per figure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from mlflow.models import Model

from pyfunc.contract import BASELINE_SHARE_KEY, PROFILE_ARTIFACT
from steps.monitoring import text
from steps.stage.errors import StageError

PROFILE_VERSION = 1
SAMPLE_SIZE = 5000  # lengths and scores kept for the distribution comparisons


def build_profile(
    reviews: Sequence[str],
    scores: np.ndarray,
    token_counts: tuple[np.ndarray, np.ndarray],
    *,
    positive_label_share: float,
    accuracy: float,
    seed: int = 0,
) -> dict[str, Any]:
    """The profile of held-out reviews scored by the model (see the module docstring)."""
    scores = np.asarray(scores, dtype=float)
    unseen, tokens = token_counts
    pick = np.random.default_rng(seed).permutation(len(reviews))[:SAMPLE_SIZE]
    pick.sort()
    return {
        "profile_version": PROFILE_VERSION,
        "reviews": len(reviews),
        "positive_label_share": float(positive_label_share),
        BASELINE_SHARE_KEY: float(np.mean(scores > 0.5)) if len(scores) else 0.0,
        "accuracy": float(accuracy),
        "unseen_token_share": float(unseen.sum() / max(int(tokens.sum()), 1)),
        "markup_share": text.markup_share(reviews),
        "not_english_share": float(np.mean(text.not_english(reviews))) if len(reviews) else 0.0,
        "review_chars": text.lengths(reviews)[pick].tolist(),
        "scores": np.round(scores[pick], 5).tolist(),
    }


def read_profile(model_dir: Path, where: str) -> dict[str, Any]:
    """The profile inside a downloaded model folder; `where` names the model in errors."""
    try:
        flavor = Model.load(str(model_dir)).flavors["python_function"]
        path = Path(model_dir) / flavor["artifacts"][PROFILE_ARTIFACT]["path"]
    except (KeyError, TypeError):
        raise StageError(
            f"{where} has no training profile (artifact {PROFILE_ARTIFACT!r}): it was trained"
            " before drift monitoring existed; train and register a new version"
        ) from None
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageError(f"{where}: cannot read its training profile {path} ({exc})") from None
    if profile.get("profile_version") != PROFILE_VERSION:
        raise StageError(
            f"{where}: training profile version {profile.get('profile_version')!r}, this code"
            f" reads version {PROFILE_VERSION}"
        )
    return profile
