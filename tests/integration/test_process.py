"""The hub as an operator runs it: `eai-hub run`, its exits on bad configuration, its CLI."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub.broker.embedded import free_port
from hub.runtime import STOP_GRACE_S
from tests.conftest import AUTH, hub_env
from tests.helpers import produce

pytestmark = pytest.mark.integration
EAI = [sys.executable, "-m", "hub.cli"]


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.add(k)
                    todo.append(k)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
    return state != "Z"


def stop(proc: subprocess.Popen[bytes], timeout: float = 40) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout)


def assert_none_alive(pids: set[int], why: str = "process left behind after SIGTERM") -> None:
    time.sleep(0.5)
    assert [p for p in pids if alive(p)] == [], why


def test_run_answers_health_and_leaves_nothing_behind_after_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = hub_env(EAI_PORT=str(port))
    t0 = time.monotonic()
    proc = subprocess.Popen([*EAI, "run"], env=env, cwd=tmp_path)
    children: set[int] = set()
    try:
        healthy = False
        while time.monotonic() - t0 < 30:
            children |= descendants(proc.pid)
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                if r.status_code == 200 and r.json() == {"status": "ok"}:
                    healthy = True
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "hub exited during start"
            time.sleep(0.2)
        assert healthy, "no /health within 30 s"
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5, headers=AUTH).json()
        assert ready["ready"] is True and ready["checks"] == {"store": "ok", "broker": "ok"}
        doc = httpx.get(f"http://127.0.0.1:{port}/asyncapi.json", timeout=30, headers=AUTH).json()
        assert doc["asyncapi"].startswith("3.")
        addresses = {c["address"] for c in doc["channels"].values()}
        assert {"canonical.customer", "changes.order", "eai.dlq", "outbound.erp"} <= addresses
        children |= descendants(proc.pid)
        assert children, "the embedded broker runs as a child process"
        assert (tmp_path / "var" / "eai-hub.db").exists(), "default SQLite store under ./var"
    finally:
        code = stop(proc, 30)
    assert code == 0
    assert_none_alive(children, "orphan process left after SIGTERM")


def test_embedded_broker_dies_with_a_sigkilled_hub(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([*EAI, "run"], env=hub_env(EAI_PORT=str(port)), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 30
        kids: set[int] = set()
        while time.monotonic() < deadline and not kids:
            kids = descendants(proc.pid)
            time.sleep(0.2)
        assert kids
    finally:
        proc.kill()
        proc.wait(10)
    time.sleep(0.5)
    assert [c for c in kids if alive(c)] == []


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("EAI_KAFKA_BOOTSTRAP", "127.0.0.1:{closed}", "127.0.0.1:{closed}"),
        (
            "EAI_DATABASE_URL",
            "postgresql+asyncpg://nobody@127.0.0.1:{closed}/x",
            "127.0.0.1:{closed}",
        ),
        ("EAI_DATABASE_URL", "sqlite+aiosqlite:////proc/eai-forbidden/x.db", "/proc/eai-forbidden"),
    ],
)
def test_unreachable_dependency_fails_fast_naming_the_address(
    tmp_path: Path, setting: str, value: str, expected: str
) -> None:
    closed = free_port()
    env = hub_env(
        EAI_PORT=str(free_port()),
        EAI_KAFKA_CONNECT_TIMEOUT_S="10",
        EAI_DATABASE_CONNECT_TIMEOUT_S="10",
        **{setting: value.format(closed=closed)},
    )
    t0 = time.monotonic()
    r = subprocess.run([*EAI, "run"], env=env, cwd=tmp_path, capture_output=True, timeout=60)
    elapsed = time.monotonic() - t0
    out = (r.stdout + r.stderr).decode()
    assert r.returncode != 0
    assert expected.format(closed=closed) in out, out[-2000:]
    assert elapsed < 25, f"took {elapsed:.1f}s"
    assert "Traceback" not in out, "a clear error, not a stack trace"


async def test_topics_lists_true_end_offsets(broker: str) -> None:
    # One produce call lands 285 records in few batches: the embedded broker's ListOffsets
    # would report the last batch's base + 1; the CLI must show 285.
    await produce(broker, "eai.test.offsets", [(None, b"x%d" % i) for i in range(285)])
    r = subprocess.run(
        [*EAI, "topics", "--bootstrap", broker],
        capture_output=True,
        timeout=60,
        env=hub_env(COLUMNS="200"),
    )
    out = r.stdout.decode()
    assert r.returncode == 0, out + r.stderr.decode()
    lines = [ln for ln in out.splitlines() if "eai.test.offsets" in ln]
    assert len(lines) > 1, "one line per partition"
    assert sum(int(ln.split("│")[-2]) for ln in lines) == 285, out


def test_contracts_export_writes_a_schema_per_model(tmp_path: Path) -> None:
    r = subprocess.run(
        [*EAI, "contracts", "export", str(tmp_path / "s")], capture_output=True, timeout=60
    )
    assert r.returncode == 0, r.stderr.decode()
    files = sorted(p.name for p in (tmp_path / "s").iterdir())
    for model in (
        "envelope",
        "customer",
        "material",
        "order",
        "bom",
        "inventory",
        "approval_request",
        "approval_decision",
        "urge",
    ):
        assert f"{model}.v1.schema.json" in files
    schema = json.loads((tmp_path / "s" / "customer.v1.schema.json").read_text())
    assert "identifiers" in schema["properties"]
    assert os.path.getsize(tmp_path / "s" / "envelope.v1.schema.json") > 100


def test_run_with_workers_starts_them_and_stops_them_all(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*EAI, "run", "--workers", "3"], env=hub_env(EAI_PORT=str(port)), cwd=tmp_path
    )
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 40
        workers: list[int] = []
        while time.monotonic() < deadline:
            kids |= descendants(proc.pid)
            workers = [
                k for k in kids if alive(k) and b"worker" in Path(f"/proc/{k}/cmdline").read_bytes()
            ]
            if len(workers) == 2:
                break
            time.sleep(0.3)
        assert len(workers) == 2, "the hub process plus two worker processes"
    finally:
        assert stop(proc) == 0
    assert_none_alive(kids)


def _wait(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout:.0f} s: {what}")


def _api_up(port: int) -> bool:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2, headers=AUTH)
        return r.status_code == 200 and r.json()["ready"] is True
    except httpx.HTTPError:
        return False


def test_a_dead_embedded_broker_is_replaced_and_the_hub_goes_on(tmp_path: Path) -> None:
    """Started from a shell there is no supervisor: when its embedded broker dies the hub
    starts again in the same process (a new, empty broker; the outbox republished) and keeps
    accepting and applying records."""
    from connectors.crm.simulator import generate

    port = free_port()
    env = hub_env(EAI_PORT=str(port), EAI_SYNC_ENABLED="false", EAI_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*EAI, "run"], env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    kids: set[int] = set()
    try:
        _wait("the hub ready", lambda: _api_up(port))
        [first] = descendants(proc.pid)
        kids.add(first)
        os.kill(first, signal.SIGKILL)
        killed = time.monotonic()

        def replaced() -> bool:
            now = {k for k in descendants(proc.pid) if alive(k)} - {first}
            kids.update(now)
            return bool(now) and _api_up(port)

        _wait("a new broker and the hub ready again", replaced)
        # The old hub's consumers wait for a coordinator that is gone: its stop gives them
        # BROKER_LOST_GRACE_S, not the whole STOP_GRACE_S of an orderly stop.
        down = time.monotonic() - killed
        assert down < STOP_GRACE_S, f"the hub was back {down:.1f} s after its broker died"
        assert proc.poll() is None, "the hub process stays up"
        cards = [r for e, r in itertools.islice(generate(3, 0.0), 40) if e == "customer"][:5]
        assert len(cards) == 5
        r = httpx.post(f"{url}/connectors/crm/customer", json=cards, headers=AUTH, timeout=30)
        assert r.status_code == 202, r.text

        def applied() -> bool:
            flows = httpx.get(f"{url}/flows", headers=AUTH, timeout=5).json()
            return next(f for f in flows if f["name"] == "records")["applied"] >= 5

        _wait("the records applied by the new hub", applied)
        metrics = httpx.get(f"{url}/metrics", headers=AUTH, timeout=10).text
        assert "eai_hub_restarts_total 1.0" in metrics
    finally:
        code = stop(proc)
    assert code == 0
    assert_none_alive(kids, "no broker left behind")


def test_run_starts_a_dead_worker_again(tmp_path: Path) -> None:
    port = free_port()
    env = hub_env(EAI_PORT=str(port), EAI_SYNC_ENABLED="false", EAI_LOG_LEVEL="WARNING")
    proc = subprocess.Popen([*EAI, "run", "--workers", "2"], env=env, cwd=tmp_path)
    kids: set[int] = set()

    def workers() -> list[int]:
        now = {k for k in descendants(proc.pid) if alive(k)}
        kids.update(now)
        return [k for k in now if b"worker" in Path(f"/proc/{k}/cmdline").read_bytes()]

    try:
        _wait("a worker", lambda: len(workers()) == 1)
        [first] = workers()
        os.kill(first, signal.SIGKILL)
        _wait("the worker started again", lambda: workers() not in ([], [first]), timeout=20)
        assert proc.poll() is None
    finally:
        code = stop(proc)
    assert code == 0
    assert_none_alive(kids)
