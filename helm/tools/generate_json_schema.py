#!/usr/bin/env python3
"""Generate a chart's ``values.schema.json`` from its ``values.schema.yaml``.

The YAML is the single source (z2jh does the same with ``tools/generate-json-schema.py``):
it is commented and readable, while Helm only reads JSON. On top of a plain conversion this
inlines every ``$ref`` that points at a file, so that the platform catalogue's schema
(``core/catalogue.schema.yaml``) is not copied by hand into the chart, and the chart
cannot drift from what the hub itself accepts.

Inlining rules (kept draft-07 so Helm 3 and Helm 4 both read the result):

* the referenced file's ``$schema``/``title`` are dropped (only a root may carry ``$schema``);
* its ``$defs``/``definitions`` move to the root's ``definitions`` under ``<stem>.<name>``
  (``catalogue.limits``), and its local ``#/$defs/x`` references are rewritten to match;
* sibling keywords next to the ``$ref`` (e.g. ``description``) are kept; draft-07 ignores
  siblings of ``$ref``, so the ref is replaced by the inlined schema instead.

Usage::

    python helm/tools/generate_json_schema.py            # write helm/kubelab/values.schema.json
    python helm/tools/generate_json_schema.py --check    # exit 1 when the JSON is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parent.parent / "kubelab"


def _rewrite_local_refs(node: Any, prefix: str) -> Any:
    """Return ``node`` with ``#/$defs/x`` and ``#/definitions/x`` refs pointing at ``#/definitions/<prefix>.x``."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for local in ("#/$defs/", "#/definitions/"):
                    if value.startswith(local):
                        value = f"#/definitions/{prefix}.{value[len(local):]}"
                        break
            out[key] = _rewrite_local_refs(value, prefix)
        return out
    if isinstance(node, list):
        return [_rewrite_local_refs(item, prefix) for item in node]
    return node


def _inline_file_refs(node: Any, base: Path, definitions: dict[str, Any]) -> Any:
    """Replace file ``$ref``s below ``node`` by the referenced schema, collecting their definitions."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            target = (base / ref).resolve()
            if not target.is_file():
                raise FileNotFoundError(f"{base}: $ref {ref!r} does not name a file ({target})")
            loaded = yaml.safe_load(target.read_text())
            prefix = target.name.split(".")[0]
            loaded = _rewrite_local_refs(loaded, prefix)
            for section in ("$defs", "definitions"):
                for name, sub in (loaded.pop(section, None) or {}).items():
                    definitions[f"{prefix}.{name}"] = _inline_file_refs(sub, target.parent, definitions)
            loaded.pop("$schema", None)
            loaded.pop("title", None)
            inlined = _inline_file_refs(loaded, target.parent, definitions)
            # Siblings written next to the $ref (a description) win over the file's own.
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            return {**inlined, **siblings}
        return {key: _inline_file_refs(value, base, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_file_refs(item, base, definitions) for item in node]
    return node


def generate(source: Path) -> dict[str, Any]:
    """Build the JSON schema from ``source`` (a ``values.schema.yaml``).

    Args:
        source: Path of the YAML schema.

    Returns:
        The schema with every file reference inlined.

    Raises:
        FileNotFoundError: A ``$ref`` names a file that does not exist.
    """
    root = yaml.safe_load(source.read_text())
    definitions: dict[str, Any] = dict(root.pop("definitions", None) or {})
    body = _inline_file_refs(root, source.parent, definitions)
    body["definitions"] = dict(sorted(definitions.items()))
    return body


def render(schema: dict[str, Any]) -> str:
    """Serialize the schema the way it is committed (stable key order, trailing newline)."""
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or, with ``--check``, compare) the chart's ``values.schema.json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chart", type=Path, default=CHART_DIR, help="chart directory (default: helm/kubelab)")
    parser.add_argument("--check", action="store_true", help="exit 1 if values.schema.json is out of date")
    args = parser.parse_args(argv)
    source = args.chart / "values.schema.yaml"
    target = args.chart / "values.schema.json"
    text = render(generate(source))
    if args.check:
        current = target.read_text() if target.exists() else ""
        if current != text:
            print(f"{target} is out of date; run: python helm/tools/generate_json_schema.py", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
