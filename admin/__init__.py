"""kubelab.admin: GPUs for the people who run the cluster.

* :mod:`.accounting` (pure): allocations, intervals, GPU-second totals per user, group, class and month;
* :mod:`.store`: the intervals table in the hub's own database (SQLAlchemy, SQLite or PostgreSQL);
* :mod:`.accountant`: the platform component that follows the cluster and keeps the table, across restarts;
* :mod:`.overview` (pure): what the admin page shows, and the same as Prometheus samples;
* :mod:`.console`: the settings (``c.KubelabAdmin``) and the overview built from the platform's state;
* :mod:`.handlers`: ``/hub/kubelab/admin`` and ``/hub/api/kubelab/admin/usage[.csv]``;
* :mod:`.metrics`: the gauges and the cull counter on ``/hub/metrics``;
* :mod:`.configure`: :func:`configure_admin`, called by the composition root.
"""
