"""Backends behind :class:`kubelab.jobs.JobClient`: the hub's jobs service, and local processes."""
