"""Prints the TF_CONFIG the entrypoint set, as one JSON line (the TF_CONFIG acceptance check).

With ``--handshake`` every worker first connects to every other worker's address from TF_CONFIG
and waits until all others connected to it, the way a TensorFlow cluster forms, so that no worker
exits while a peer still needs to reach it.
"""

import json
import os
import socket
import sys
import threading
import time

config = json.loads(os.environ["TF_CONFIG"])
print("TF_CONFIG=" + json.dumps(config, sort_keys=True), flush=True)
if "--handshake" in sys.argv[1:]:
    workers = config["cluster"]["worker"]
    me = config["task"]["index"]
    server = socket.create_server(("0.0.0.0", int(workers[me].rsplit(":", 1)[1])))
    accepted = []

    def accept() -> None:
        while len(accepted) < len(workers) - 1:
            conn, _ = server.accept()
            accepted.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    deadline = time.monotonic() + 120
    for i, addr in enumerate(workers):
        if i == me:
            continue
        host, port = addr.rsplit(":", 1)
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"worker {addr} unreachable")
                time.sleep(0.2)
    while len(accepted) < len(workers) - 1:
        if time.monotonic() > deadline:
            sys.exit("not every worker connected")
        time.sleep(0.1)
    print(f"handshake with {len(workers) - 1} worker(s) done", flush=True)
