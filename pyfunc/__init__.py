"""The model that ships: text cleaner + n-gram counts + multi-view linear classifier, as one
scikit-learn Pipeline (`pyfunc.pipeline.build_pipeline`) behind an MLflow PythonModel
(`pyfunc.model.SentimentModel`). Logged as code (`pyfunc.code_model`, with this package as
`code_paths`) and its fitted state as data (`pyfunc.state`), so it must never import `steps/`;
the stages import only `pyfunc.contract`, the names they share with it."""
