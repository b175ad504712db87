"""API keys: make one, hash one.

    python -m serving.keys new --name fraud-scorer --scopes predict [--out keys.json]
        -> the key (give it to the client) and the entry for SERVING_API_KEYS (keep it in a
           Secret); with --out, the entry is added to that JSON file (SERVING_API_KEYS_FILE)
    python -m serving.keys hash KEY   -> the SHA-256 the settings hold

Keys are 32 random bytes (URL-safe base64). Serving stores only their SHA-256: a key has the
entropy to make a salted slow hash pointless, and a request is checked with one hash and one
dictionary lookup.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from pathlib import Path

from serving.settings import SCOPES, ApiKey


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new(scopes: list[str]) -> tuple[str, ApiKey]:
    key = secrets.token_urlsafe(32)
    return key, ApiKey.model_validate({"sha256": digest(key), "scopes": scopes})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.keys", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("new", help="A new key and its settings entry.")
    make.add_argument("--name", required=True, help="Who holds it (the metrics and logs say).")
    make.add_argument("--scopes", required=True, help=f"Comma-separated, of {', '.join(SCOPES)}.")
    make.add_argument("--out", type=Path, help="Add the entry to this JSON file (created 0600).")
    hashed = sub.add_parser("hash", help="The SHA-256 of a key.")
    hashed.add_argument("key")
    args = parser.parse_args(argv)
    if args.command == "hash":
        print(digest(args.key))
        return 0
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        parser.error(f"--scopes: unknown {unknown}; choose from {', '.join(SCOPES)}")
    key, entry = new(scopes)
    print(f"key: {key}")
    if args.out is None:
        entry_json = json.dumps(
            {args.name: {"sha256": entry.sha256, "scopes": sorted(entry.scopes)}}, sort_keys=True
        )
        print(f"SERVING_API_KEYS entry: {entry_json}")
        return 0
    keys = json.loads(args.out.read_text()) if args.out.exists() else {}
    if args.name in keys:
        parser.error(f"--name {args.name!r} is already in {args.out}")
    keys[args.name] = {"sha256": entry.sha256, "scopes": sorted(entry.scopes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.touch(mode=0o600)
    args.out.write_text(json.dumps(keys, indent=2, sort_keys=True) + "\n")
    print(f"added {args.name!r} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
