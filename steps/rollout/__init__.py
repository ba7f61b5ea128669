"""Blue/green rollout to Kubernetes: the pure planner (plan), the adapter over the official
client (kube), the serving image (image), the smoke test (smoke) and the executor that carries
plans out against a cluster and the registry (deployer)."""
