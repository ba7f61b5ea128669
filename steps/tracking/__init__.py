"""MLflow tracking and the Model Registry: where runs go and the run each stage logs into
(store), and registered versions, aliases and tags (registry)."""
