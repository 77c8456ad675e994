"""Prints the TF_CONFIG the entrypoint set, as one JSON line (the TF_CONFIG acceptance check)."""

import json
import os

print("TF_CONFIG=" + json.dumps(json.loads(os.environ["TF_CONFIG"]), sort_keys=True), flush=True)
