"""Great Expectations: running the reviewed suites of expectations/ on DataFrames (suite), the
custom expectations they use (expectations), and failures in plain words (messages)."""
