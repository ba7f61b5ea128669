"""imdb-sentiment's MLflow Project code.

A module directly in `steps/` is an MLproject entry point (`python -m steps.<name>` is what
`mlflow run . -e <name>` runs); where it is a pipeline stage it is also a dvc.yaml stage and a
params.yaml section of the same name. Every folder under `steps/` is a library package the entry
points share; libraries never import entry points (tests/test_architecture.py checks both rules).
"""
