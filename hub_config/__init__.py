"""kubelab.hub_config."""
