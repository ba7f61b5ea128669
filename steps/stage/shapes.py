"""Shapes several params.yaml fields share (steps/stage/config.py): a declared type with its
bounds, named once (steps/stage/schema.py says how a declaration is read)."""

from typing import Annotated

from steps.stage.schema import NonEmpty, Range, Span

Fraction = Annotated[float, Range(ge=0, le=1)]  # a share of rows, reviews or calls
Seconds = Annotated[float, Range(ge=0)]
Positive = Annotated[float, Range(gt=0)]
Count = Annotated[int, Range(ge=1)]
Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]  # the seeds numpy and scikit-learn accept
Name = Annotated[str, NonEmpty()]
NgramSizes = Annotated[tuple[int, int], Span(ge=1)]
