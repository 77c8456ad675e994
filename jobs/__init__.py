"""kubelab.jobs."""
