"""`make bench`: run every benchmark module that has a main()."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main() -> int:
    only = sys.argv[1:]
    failed = 0
    for mod in sorted(m.name for m in pkgutil.iter_modules(bench.__path__)):
        if mod.startswith("_") or mod == "data" or (only and mod not in only):
            continue
        module = importlib.import_module(f"bench.{mod}")
        if not hasattr(module, "main"):
            continue
        print(f"\n=== bench.{mod} ===", flush=True)
        t0 = time.perf_counter()
        try:
            module.main()
        except Exception as exc:  # keep going: one broken bench must not hide the others
            failed += 1
            print(f"FAILED: {type(exc).__name__}: {exc}")
        print(f"--- {time.perf_counter() - t0:.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
