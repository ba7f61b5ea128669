"""Helpers for tests: small review data written by the tests themselves, free loopback ports.

The reviews are varied enough that validation passes (unique, balanced, realistic lengths) and a
real model can learn them, but they are synthetic: no test depends on ../shared.
"""

from __future__ import annotations

import random
import socket

import pandas as pd

_POSITIVE = [
    "wonderful", "brilliant", "moving", "superb", "delightful", "excellent", "great",
    "touching", "funny", "gripping", "beautiful", "masterful", "charming", "memorable",
]
_NEGATIVE = [
    "awful", "boring", "terrible", "dull", "clumsy", "dreadful", "bad", "tedious",
    "pointless", "horrible", "lifeless", "predictable", "weak", "painful",
]
_NEUTRAL = [
    "the plot", "the acting", "the script", "the ending", "the soundtrack", "the director",
    "the cast", "the pacing", "the dialogue", "the camera work", "the story", "the lead actor",
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
