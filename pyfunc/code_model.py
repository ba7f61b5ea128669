"""The file MLflow logs as the model (models-from-code, `python_model=<this file>`).

MLflow runs this file to get the model object instead of unpickling one: that is its whole
purpose, so the `set_model` call below is the one piece of work this package does at import
time. The fitted pipeline is not code: `SentimentModel.load_context` reads it from the logged
state folder (pyfunc/state.py), with no pickle anywhere.
"""

from mlflow.models import set_model

from pyfunc import model

# MLflow puts each model's code/ folder on sys.path but reuses a `pyfunc` already imported. One
# from a version logged before the state format cannot read this model: say so, not KeyError.
if not hasattr(model, "STATE_ARTIFACT"):
    raise ImportError(
        f"this process already imported an older pyfunc ({model.__file__}), which cannot read"
        " this model's state: load this model in a fresh process"
    )

set_model(model.SentimentModel())
