"""Blue/green rollout to Kubernetes: the pure planner (plan), the adapter over the official
client (kube), the images (image: the serving image built by `mlflow models build-docker` and
pushed by digest, the deployer's image; base_image: the base they start from, pulled or built
from Debian's packages; docker: the adapter over the docker CLI), the smoke test (smoke) and the
executor that carries plans out against a cluster and the registry (deployer)."""
