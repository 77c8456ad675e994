"""kubelab.devcluster."""
