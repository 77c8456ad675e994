"""kubelab.widgets: the notebook's views of distributed jobs (no Kubernetes imports).

``JobLauncher`` imports ipywidgets only when it is created, and renders as HTML without it.
"""

from kubelab.widgets.launcher import JobLauncher

__all__ = ["JobLauncher"]
