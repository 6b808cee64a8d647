"""Decision 59: how the batch reads its file and how a worker hands its slice back.

Both are cheaper ways to do what was done before, so every check compares with the old way:
the file's lines with the text layer's reading, a slice back from a worker's file with what
pickle handed back (the same profiles, `issues` included, and key sets built the same way).
"""

from __future__ import annotations

import json
import marshal
import pickle
from dataclasses import fields
from pathlib import Path

import pytest

from flows.identity import batch
from flows.identity.batch import InputRow
from flows.identity.profile import Profile, profile_values


def test_profile_values_rebuild_every_field_issues_included() -> None:
    values: dict[str, object] = {}
    for i, f in enumerate(fields(Profile)):
        if f.name in ("entity", "kind"):
            values[f.name] = f"{f.name}-{i}"
        elif f.name in ("strong_ids", "weak_ids", "system_codes"):
            values[f.name] = ((f"s{i}", f"v{i}"), (f"t{i}", f"w{i}"))
        else:
            values[f.name] = (f"{f.name}-{i}", f"{f.name}-{i}b")
    profile = Profile(**values)  # type: ignore[arg-type]
    flat = profile_values(profile)
    assert flat == tuple(values[f.name] for f in fields(Profile))
    rebuilt = Profile(*flat)
    assert rebuilt == profile
    assert rebuilt.issues == profile.issues  # not part of ==
    assert Profile(*profile_values(Profile("customer"))) == Profile("customer")


def _customers() -> list[InputRow]:
    gen = pytest.importorskip("bench.data.gen_customers")
    records, _truth = gen.generate(300, 5, "cn")
    rows = [InputRow(str(r["source_system"]), str(r["source_id"]), r["record"]) for r in records]
    # a record with issues and one with nothing usable (an empty key set)
    rows.append(InputRow("crm", "bad", {"name": "张三", "phones": ["12"], "emails": ["x@"]}))
    rows.append(InputRow("crm", "empty", {}))
    return rows


def _materials() -> list[InputRow]:
    gen = pytest.importorskip("bench.data.gen_materials")
    records, _truth = gen.generate(300, 5)
    return [InputRow(str(r["source_system"]), str(r["source_id"]), r["record"]) for r in records]


@pytest.mark.parametrize(("entity", "make"), [("customer", _customers), ("material", _materials)])
def test_a_slice_comes_back_from_the_workers_file_as_pickle_brought_it(
    entity: str, make: object, tmp_path: Path
) -> None:
    rows = make()  # type: ignore[operator]
    direct = batch._normalize_chunk(entity, "86", rows, 0, len(rows))
    assert any(p.issues for p in direct[1]) or entity == "material"
    token = id(rows)
    batch._FORKED_INPUTS[token] = (entity, "86", rows)
    try:
        path = str(tmp_path / "slice.marshal")
        batch._normalize_slice(token, 0, len(rows), path)
    finally:
        del batch._FORKED_INPUTS[token]
    # plain values only: loading them runs no code and builds no object of ours
    ids_m, values_m, keys_m = marshal.loads(Path(path).read_bytes())
    assert ids_m == direct[0]
    assert values_m == [profile_values(p) for p in direct[1]]
    assert keys_m == [tuple(k) for k in direct[2]]
    ids, profiles, keys = batch._load_normalized(path)
    assert list(tmp_path.iterdir()) == []  # the reader removes the file
    old_ids, old_profiles, old_keys = pickle.loads(pickle.dumps(direct, pickle.HIGHEST_PROTOCOL))
    assert ids == old_ids == direct[0]
    assert profiles == old_profiles == direct[1]
    assert [p.issues for p in profiles] == [p.issues for p in direct[1]]
    assert all(type(p) is Profile for p in profiles)
    assert keys == old_keys == direct[2]
    # each key set iterates in the order the pickled one did (candidate counting, postings)
    assert [list(k) for k in keys] == [list(k) for k in old_keys]
    assert all(type(k) is frozenset for k in keys)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\ufeff",
        "a\nb",
        "a\nb\n",
        "\ufeffa\r\nb\r\n\r\n",
        "a\rb\r",
        "a\r\r\nb\n\rc",
        "a\u2028b\u2029c\x85d\x0ce\x1cf\nlast",
        "\r",
        "x\ufeffy\n",  # a byte order mark that is not the first character stays
        '{"name": "张三\\r\\n"}\r\n\n',
    ],
)
def test_the_files_lines_are_the_text_layers_lines(text: str, tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(text.encode("utf-8"))
    with src.open(encoding="utf-8-sig") as fh:
        expected = fh.read().split("\n")
    assert batch._file_lines(src) == expected


def test_a_file_that_is_not_utf8_is_still_refused(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(json.dumps({"name": "张三"}, ensure_ascii=False).encode("gbk"))
    with pytest.raises(UnicodeDecodeError):
        batch._file_lines(src)
