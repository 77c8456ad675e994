"""kubelab.spawner."""
