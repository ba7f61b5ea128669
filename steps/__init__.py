"""Pipeline stages of imdb-sentiment: one module per stage, each a pure function plus a thin CLI."""
