"""MLflow tracking and the Model Registry: where runs go and the run each stage logs into
(store), the project's runs (runs), registered versions, aliases and tags (registry), which
version serves (champion), the versions' cards (cards), what deploy records (deployments), and
loading a logged model with a one-line refusal for a version the pickle guard refuses (loading)."""
