"""Blue/green rollout to Kubernetes: the pure planner (plan, over the states and actions in
actions), the adapter over the official client (kube) and the slots' objects through it (slots),
a plan's cluster from the manifests where there is none (manifests), the images (image: the
serving image built by `mlflow models build-docker` and pushed by digest, the deployer's image;
base_image: the base they start from, pulled or built from Debian's packages; docker: the adapter
over the docker CLI), the smoke test (smoke), the analyses before and after the switch (analysis)
and the executor that decides and carries plans out, reporting events (deployer)."""
