"""kubelab.core: the hub-side state that the spawner and the jobs service share.

Everything here sits below :mod:`kubelab.spawner` and :mod:`kubelab.jobs` and imports neither:
the catalogue model (:mod:`.catalogue`), the one owner of every name and label (:mod:`.naming`),
the watch plumbing (:mod:`.watch`), the compact pod and node records (:mod:`.records`), the
cluster cache (:mod:`.cluster`), the quota ledger (:mod:`.quota`) and GPU availability
(:mod:`.availability`).
"""
