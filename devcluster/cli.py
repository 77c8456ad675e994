"""``kubelab-devcluster up|down|status|env``: the local control plane's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubelab.devcluster.cluster import DevclusterError, down, status, up
from kubelab.devcluster.controlplane import Layout, StartError
from kubelab.devcluster.settings import state_dir


def _say(line: str) -> None:
    print(f"[devcluster] {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Returns:
        The exit status: 0 on success, 1 when a prerequisite is missing or a daemon failed,
        3 for ``status`` of a stopped cluster.
    """
    parser = argparse.ArgumentParser(prog="kubelab-devcluster", description=__doc__)
    parser.add_argument("--state", type=Path, help="state folder (default $KUBELAB_STATE or ~/.cache/kubelab/devcluster)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the devcluster (idempotent); builds Kubernetes once when missing")
    p_up.add_argument("--nodes", type=Path, help="node layout YAML/JSON (default $KUBELAB_DEVCLUSTER_NODES)")
    p_down = sub.add_parser("down", help="stop the processes this devcluster started")
    p_down.add_argument("--wipe", action="store_true", help="also remove the state (PKI, etcd data, volumes)")
    sub.add_parser("status", help="show whether the devcluster runs")
    sub.add_parser("env", help="print the shell line that points kubectl at the devcluster")
    args = parser.parse_args(argv)
    state = args.state or state_dir()

    if args.command == "up":
        try:
            up(state=state, nodes=args.nodes, say=_say)
        except DevclusterError as e:
            print(f"kubelab-devcluster: {e}", file=sys.stderr)
            return 1
        except StartError as e:
            print(f"kubelab-devcluster: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "down":
        down(state=state, wipe=args.wipe, say=_say)
        return 0
    if args.command == "status":
        ok, lines = status(state)
        print("\n".join(lines))
        return 0 if ok else 3
    print(f"export KUBECONFIG={Layout(state).kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
