"""A tiny real pyfunc for registry tests, logged as code (`python_model=<this file>`).

It scores a review by the share of its words found in `model_config["positive"]` versus
`model_config["negative"]`, so tests make better or worse models by giving it more or fewer
words; it reads the column `model_config["column"]` (default `review`; `text` plays a version
logged before the input column was renamed). Logged as code, it loads in any process without this
repository.
"""

import mlflow
import pandas as pd


class KeywordModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        config = context.model_config or {}
        self.positive = set(config.get("positive", []))
        self.negative = set(config.get("negative", []))
        self.column = config.get("column", "review")

    def predict(self, context, model_input, params=None):
        texts = model_input[self.column] if isinstance(model_input, pd.DataFrame) else model_input
        scores = []
        for text in texts:
            words = str(text).lower().replace(".", " ").replace(",", " ").split()
            pos = sum(w in self.positive for w in words)
            neg = sum(w in self.negative for w in words)
            scores.append((pos + 0.5) / (pos + neg + 1.0))
        labels = ["positive" if s > 0.5 else "negative" for s in scores]
        return pd.DataFrame({"label": labels, "score": scores})


mlflow.models.set_model(KeywordModel())
