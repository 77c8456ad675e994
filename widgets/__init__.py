"""kubelab.widgets."""
