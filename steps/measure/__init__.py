"""Measuring a model: classification metrics from scores (metrics), CheckList-style behavioural
checks (behavioural), and scoring logged models each in its own process (scoring)."""
