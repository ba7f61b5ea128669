"""The model that ships: text cleaner + n-gram counts + multi-view linear classifier, as one
scikit-learn Pipeline (`pyfunc.pipeline.build_pipeline`) behind an MLflow PythonModel
(`pyfunc.model.SentimentModel`). Logged with `code_paths`, so it must never import `steps/`;
the stages import only `pyfunc.contract`, the names they share with it."""
