"""What the deploy tests share besides fixtures: the manifests' location and rendering, the
tiny pyfunc model whose versions stand in for the real model, and a deployer on the stub."""

from __future__ import annotations

import textwrap
from pathlib import Path

import mlflow
import yaml
from mlflow import MlflowClient

from steps import deploy
from steps.measure.sample import ARTIFACT_DIR, FILE_NAME, Sample
from steps.rollout.deployer import Deployer
from steps.rollout.kube import Kube
from steps.rollout.slots import VERSION_ANNOTATION, image_ref
from steps.stage.paths import PROJECT_ROOT

K8S_DIR = PROJECT_ROOT / "k8s"
BLUE, GREEN = "imdb-sentiment-blue", "imdb-sentiment-green"
LIVE, PREVIEW = "imdb-sentiment", "imdb-sentiment-preview"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"

# A tiny real pyfunc: "positive" when a review contains one of its words. Versions differ by
# their words, so a test can tell which version answered.
MODEL_CODE = textwrap.dedent("""
    import mlflow
    import pandas as pd
    from mlflow.pyfunc import PythonModel


    class KeywordModel(PythonModel):
        def load_context(self, context):
            self.words = tuple(context.model_config["positive_words"])

        def predict(self, context, model_input, params=None):
            texts = model_input["review"].astype(str).str.lower()
            hits = [any(w in t for w in self.words) for t in texts]
            return pd.DataFrame({
                "label": ["positive" if h else "negative" for h in hits],
                "probability": [0.9 if h else 0.1 for h in hits],
            })


    mlflow.models.set_model(KeywordModel())
""")
# Version 2 no longer knows "best", so it and version 1 disagree on a smoke review. Version 3
# also knows "superb": it agrees with version 2 on every smoke review, not on every review.
VERSION_WORDS = {
    1: ["wonderful", "best", "loved"],
    2: ["wonderful", "loved"],
    3: ["wonderful", "loved", "superb"],
}
PIP_REQUIREMENTS = [f"mlflow=={mlflow.__version__}", "pandas"]  # skips requirement inference


# Labelled reviews for the analysis sample of a version: version 2 gets "superb" and "best" wrong.
SAMPLE_REVIEWS = {
    "A superb film.": "positive",
    "Loved it.": "positive",
    "Wonderful cast.": "positive",
    "Dull.": "negative",
    "Awful plot.": "negative",
    "The best of the year.": "positive",
}


def log_sample(
    client, name: str, version: int, tmp: Path, words: list[str] | None = None, **figures: float
) -> Sample:
    """Log an analysis sample of SAMPLE_REVIEWS in the run of `version` (whose model knows
    `words`: VERSION_WORDS[version] by default), as evaluate does; `figures` override what
    evaluation "measured" (accuracy, positive_share)."""
    words = words or VERSION_WORDS[version]
    predicted = [
        "positive" if any(w in r.lower() for w in words) else "negative" for r in SAMPLE_REVIEWS
    ]
    right = [p == t for p, t in zip(predicted, SAMPLE_REVIEWS.values(), strict=True)]
    drawn = Sample(
        reviews=list(SAMPLE_REVIEWS), labels=list(SAMPLE_REVIEWS.values()),
        accuracy=figures.get("accuracy", sum(right) / len(right)),
        positive_share=figures.get("positive_share", predicted.count("positive") / len(right)),
        sample_accuracy=sum(right) / len(right), model_uri=None,
    )  # fmt: skip
    path = tmp / str(version) / FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    drawn.write(path)
    run_id = client.get_model_version(name, str(version)).run_id
    client.log_artifact(run_id, str(path), ARTIFACT_DIR)
    return drawn


def kustomization_documents(directory: Path = K8S_DIR) -> list[dict]:
    """Every document of every resource the kustomization lists, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((directory / resource).read_text()) if d]
    return documents


def make_deployer(cfg, name: str, **kwargs) -> Deployer:
    """A deployer on the cluster $KUBECONFIG names (the stub, in these tests), whose events the
    entry point shows as `deploy` does."""
    kube = Kube.connect(cfg.namespace, cfg.context, cfg.request_timeout)
    return Deployer(cfg, name, kube, MlflowClient(), report=deploy.say, **kwargs)


def seed(cluster, cfg, slot_deployment: str, version: int, server: str | None = None) -> str:
    """Make a slot run a version, as an earlier deploy left it (its pods: `server`, if any)."""
    image = image_ref(cfg, version)
    if server:
        cluster.images[image] = server
    cluster.set_running(slot_deployment, image, {VERSION_ANNOTATION: str(version)})
    return image
