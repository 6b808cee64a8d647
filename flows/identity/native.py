"""The matcher's compiled modules (decision 63): mypyc builds of its pure decision modules.

Resolving a record is thousands of small comparisons per candidate in plain Python; compiled to
C by mypyc (the compiler that ships with mypy, fed by the strict types these modules already
carry) the same source scores, ranks and fits in about two thirds of the time. A build belongs
to exactly one version of the sources: it lives under `build/native/<digest>/`, the digest
taken over the compiled modules' text and the interpreter's ABI, and `activate` uses it only
when the digest of the sources on disk names a finished build. An edited module therefore
falls back to Python until it is built again (`make native`, which `make run`, `make test` and
`make bench` run first), and nothing stale can be imported. EAI_IDENTITY_NATIVE=0 keeps the
Python modules even when a build exists; the results are the same bit for bit
(tests/unit/test_identity_compiled.py).

    python -m flows.identity.build_native build     # or: status
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

# the matcher's pure modules in flows/identity/; the rest there (batch orchestration, worker
# pools, the streaming flow, the store-backed index) waits on processes and I/O, and stays
# Python
NATIVE_MODULES = (
    "blocking",
    "profile",
    "scoring",
    "resolver",
    "training",
    "latin",
    "parts",
    "_regions",
    "normalize",
)
SWITCH = "EAI_IDENTITY_NATIVE"  # "0": always the Python modules
BUILD_DIR = "EAI_IDENTITY_NATIVE_DIR"  # where builds live; default <project>/build/native

_PACKAGE = Path(__file__).resolve().parent
_PROJECT = _PACKAGE.parent.parent
_COMPLETE = "COMPLETE"  # written last: a build without it is unfinished and never used


def _ext_suffix() -> str:
    return str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def digest() -> str:
    """Of the compiled modules' sources and the interpreter they are built for."""
    h = hashlib.sha256()
    h.update(f"{sys.implementation.cache_tag}|{_ext_suffix()}|{sys.hexversion}".encode())
    for name in NATIVE_MODULES:
        h.update(name.encode() + b"\0" + (_PACKAGE / f"{name}.py").read_bytes() + b"\0")
    return h.hexdigest()[:20]


def build_root() -> Path:
    configured = os.environ.get(BUILD_DIR)
    return Path(configured) if configured else _PROJECT / "build" / "native"


def built_dir() -> Path | None:
    """The finished build for the sources as they are now, or None."""
    target = build_root() / digest()
    return target if (target / _COMPLETE).is_file() else None


def activate(package_path: list[str]) -> bool:
    """Put the build for these sources in front of the package's own directory.

    Called by flows/identity/__init__.py before it imports any compiled module. Returns whether
    the compiled modules will be the ones imported.
    """
    if os.environ.get(SWITCH, "1").strip() == "0":
        return False
    try:
        target = built_dir()
    except OSError:
        return False
    if target is None:
        return False
    # mypyc puts the code of all modules in one top-level library that each module's small
    # extension loads by name
    if str(target) not in sys.path:
        sys.path.append(str(target))
    package_path.insert(0, str(target / "flows" / "identity"))
    return True


def build(*, force: bool = False, verbose: bool = False) -> Path:
    """Compile NATIVE_MODULES for the current sources unless that build exists; its directory.

    Compiles a copy of the flows package (mypyc writes its extensions next to the sources it
    is given, and the checkout must never hold an extension that can go stale), then moves the
    extensions into place and marks the build finished. Raises `BuildError` with mypyc's output
    when it fails (no C compiler, a construct mypyc rejects).
    """
    key = digest()
    root = build_root()
    target = root / key
    if not force and (target / _COMPLETE).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eai-native-") as tmp:
        work = Path(tmp)
        shutil.copytree(
            _PACKAGE.parent, work / "flows", ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
        options: list[str] = []
        pyproject = _PROJECT / "pyproject.toml"
        if pyproject.is_file():
            # the project's mypy settings (strict, the pydantic plugin), under another name:
            # named pyproject.toml, setuptools would read the project's packaging from it too
            shutil.copy2(pyproject, work / "mypy-settings.toml")
            options = ["--config-file", "mypy-settings.toml"]
        sources = [f"flows/identity/{name}.py" for name in NATIVE_MODULES]
        done = subprocess.run(
            [sys.executable, "-m", "mypyc", *options, *sources],
            cwd=work,
            capture_output=not verbose,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BuildError(f"mypyc failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        suffix = _ext_suffix()
        stage = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        (stage / "flows" / "identity").mkdir(parents=True)
        for lib in work.glob(f"*__mypyc{suffix}"):
            shutil.move(lib, stage / lib.name)
        for name in NATIVE_MODULES:
            ext = work / "flows" / "identity" / f"{name}{suffix}"
            if not ext.is_file():
                shutil.rmtree(stage, ignore_errors=True)
                raise BuildError(f"mypyc built no {ext.name}")
            shutil.move(ext, stage / "flows" / "identity" / ext.name)
    (stage / _COMPLETE).write_text(f"{key}\n{sys.version}\n")
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    os.replace(stage, target)
    _prune(root, keep=target)
    return target


def _prune(root: Path, keep: Path, kept: int = 3) -> None:
    """Remove all but the `kept` newest builds: older sources come back when a branch is
    checked out again, but never many. Builds being staged (dot names) are left alone."""
    builds = [e for e in root.iterdir() if e.is_dir() and not e.name.startswith(".")]
    builds.sort(key=lambda e: (e == keep, e.stat().st_mtime), reverse=True)
    for entry in builds[kept:]:
        shutil.rmtree(entry, ignore_errors=True)


class BuildError(RuntimeError):
    """mypyc could not build the modules; the Python ones stay in use."""


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "build":
        if built_dir() is None or "--force" in argv:
            print(
                "compiling the identity matcher with mypyc (about a minute, once per version "
                "of its sources)...",
                flush=True,
            )
        try:
            target = build(force="--force" in argv, verbose="--verbose" in argv)
        except (BuildError, OSError) as exc:
            print(f"identity native build failed; the Python modules stay in use\n{exc}")
            return 1 if "--strict" in argv else 0
        print(f"identity native modules: {target}")
        return 0
    if command == "status":
        found = built_dir()
        print(f"identity native modules: {found or 'not built for these sources'}")
        return 0 if found else 1
    print("usage: python -m flows.identity.build_native build [--force] [--strict] | status")
    return 2
