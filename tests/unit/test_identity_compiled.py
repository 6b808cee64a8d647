"""Decision 63: the matcher's modules compiled by mypyc, used only for the sources they were
built from, deciding exactly what the Python modules decide."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import flows.identity
from flows.identity import native

ROOT = Path(__file__).resolve().parents[2]


def _require_build() -> None:
    """Skip where no build can exist; everywhere else a missing build is a failure."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler on this machine: the Python modules serve (decision 63)")
    if os.environ.get(native.SWITCH, "1").strip() == "0":
        pytest.skip(f"{native.SWITCH}=0 in this environment asks for the Python modules")
    assert flows.identity.NATIVE, (
        "no mypyc build for these sources: `make native` (make test does it first)"
    )


def test_the_matcher_runs_compiled_where_a_c_compiler_exists() -> None:
    _require_build()
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for name in native.NATIVE_MODULES:
        module = sys.modules.get(f"flows.identity.{name}") or __import__(
            f"flows.identity.{name}", fromlist=["_"]
        )
        assert str(module.__file__).endswith(suffix), module.__file__
    assert str(sys.modules["flows.identity.config"].__file__).endswith(".py")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the compiled modules' sources, with builds looked for under tmp_path/builds."""
    copy = tmp_path / "flows" / "identity"
    copy.mkdir(parents=True)
    for name in native.NATIVE_MODULES:
        shutil.copy2(ROOT / "flows" / "identity" / f"{name}.py", copy / f"{name}.py")
    monkeypatch.setattr(native, "_PACKAGE", copy)
    monkeypatch.setenv(native.BUILD_DIR, str(tmp_path / "builds"))
    monkeypatch.delenv(native.SWITCH, raising=False)
    return copy


def test_a_build_is_used_only_for_the_sources_it_was_built_from(package: Path) -> None:
    before = native.digest()
    built = native.build_root() / before
    (built / "flows" / "identity").mkdir(parents=True)
    path: list[str] = [str(package)]

    # an unfinished build (no COMPLETE mark) is never used
    assert native.built_dir() is None
    assert native.activate(path) is False and path == [str(package)]

    (built / "COMPLETE").write_text(before)
    assert native.built_dir() == built
    assert native.activate(path) is True
    assert path == [str(built / "flows" / "identity"), str(package)]
    assert str(built) in sys.path
    sys.path.remove(str(built))

    # one edited module: the digest moves, the old build no longer matches
    scoring = package / "scoring.py"
    scoring.write_text(scoring.read_text() + "\n# edited\n")
    assert native.digest() != before
    fresh: list[str] = [str(package)]
    assert native.built_dir() is None
    assert native.activate(fresh) is False and fresh == [str(package)]


def test_the_switch_keeps_the_python_modules_even_with_a_build(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = native.build_root() / native.digest()
    built.mkdir(parents=True)
    (built / "COMPLETE").write_text("x")
    monkeypatch.setenv(native.SWITCH, "0")
    path: list[str] = [str(package)]
    assert native.activate(path) is False and path == [str(package)]


def _dedup(entity: str, records: Path, out: Path, compiled: bool) -> bytes:
    env = {**os.environ, native.SWITCH: "1" if compiled else "0"}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import flows.identity as f, sys; from hub.cli import main; "
            "print('NATIVE', f.NATIVE, file=sys.stderr); sys.argv[0] = 'eai-hub'; main()",
            "dedup",
            "batch",
            "--entity",
            entity,
            "--input",
            str(records),
            "--output",
            str(out),
            "--explain",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"NATIVE {compiled}" in done.stderr
    return out.read_bytes()


@pytest.mark.parametrize(
    ("entity", "dataset", "n"),
    [
        ("customer", "cn", 6000),
        ("customer", "latin", 2500),
        ("material", "materials", 1500),
    ],
)
def test_compiled_and_python_modules_give_the_same_output_to_the_byte(
    entity: str, dataset: str, n: int, tmp_path: Path
) -> None:
    _require_build()
    if dataset == "materials":
        from bench.data.gen_materials import generate as materials

        records, _truth = materials(n, 5)
    elif dataset == "latin":
        from bench.data.gen_latin_variant import generate as latin

        records, _truth = latin(n, 5)
    else:
        from bench.data.gen_customers import generate as customers

        records, _truth = customers(n, 5, "cn")
    from bench.data.gen_customers import write_jsonl

    source = tmp_path / "in.jsonl"
    write_jsonl(source, records)
    compiled = _dedup(entity, source, tmp_path / "compiled.jsonl", compiled=True)
    python = _dedup(entity, source, tmp_path / "python.jsonl", compiled=False)
    # --explain: every decision with its evidence, weights to three places
    assert compiled.count(b"\n") == n
    assert compiled == python
