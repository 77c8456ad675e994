"""Round-trip objects through the ``kubeflow-katib`` SDK's models (v0.19.0), in a subprocess.

The SDK pins ``protobuf<5`` and ``kubeflow-training==1.9.0``, which clash with what the rest of the
test environment needs (tensorboard wants protobuf >= 6; the engine tests pin kubeflow-training
1.9.4), and its models need neither. So ``make venv`` installs it with ``--no-deps`` into a folder
of its own, ``.venv/katib-sdk``, and only this helper puts that folder on ``PYTHONPATH``, in a
child interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SDK = REPO / ".venv" / "katib-sdk"

_CHILD = """
import json, sys
import kubeflow.katib as katib
from kubeflow.katib import ApiClient

class Response:
    def __init__(self, data):
        self.data = data

client = ApiClient()
out = []
for kind, obj in json.load(sys.stdin):
    model = client.deserialize(Response(json.dumps(obj)), kind)
    out.append({"model": type(model).__name__, "spec": type(getattr(model, "spec", None)).__name__,
                "back": client.sanitize_for_serialization(model)})
print(json.dumps({"version": katib.__version__, "sdk": katib.__file__, "objects": out}))
"""


def round_trip(*objects: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``(model class name, object)`` through the SDK: each answer holds the model's class name,
    its spec's, and the object serialised back from the model (what the SDK kept of it).

    Raises:
        AssertionError: The SDK folder is missing (``make venv`` installs it) or the child failed.
    """
    assert (SDK / "kubeflow" / "katib").is_dir(), f"the Katib SDK is not installed in {SDK}: run `make venv`"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SDK), str(REPO)])}
    proc = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps(list(objects)), capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["sdk"].startswith(str(SDK)), answer["sdk"]
    return answer["objects"]
