"""Hold a PostgreSQL state lock in a separate process until stdin closes.

Used by the state backend tests to act as another run: it prints the lock it took as one
JSON line, then waits. Closing stdin ends it normally; SIGKILL simulates a crashed run.

Usage: python pg_lock_holder.py URL SCHEMA STACK
"""

from __future__ import annotations

import json
import sys

from reconciler.state.postgres import PostgresStateBackend


def main() -> int:
    url, schema, stack = sys.argv[1:4]
    backend = PostgresStateBackend(url, stack, schema=schema)
    with backend.lock("apply") as info:
        print(json.dumps(info.to_dict()), flush=True)
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
