"""File import: GBK and UTF-8 CSV, XLSX, grouped order lines, per-row rejections."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from rich.console import Console

from connectors.common.errors import Rejection
from connectors.common.fileimport import detect_encoding, import_file
from connectors.erp.connector import CUSTOMER_TITLES, MATERIAL_TITLES, ORDER_TITLES
from connectors.erp.simulator import generate as erp_traffic
from contracts.envelope import Envelope


def erp_records(entity: str, n: int) -> list[dict[str, Any]]:
    records = (r for e, r in erp_traffic(21, 0.5) if e == entity)
    return list(itertools.islice(records, n))


def write_csv(
    path: Path, titles: dict[str, str], rows: list[dict[str, Any]], encoding: str
) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(titles)
    for row in rows:
        writer.writerow([row.get(field, "") or "" for field in titles.values()])
    path.write_bytes(buffer.getvalue().encode(encoding))


def quiet() -> dict[str, Any]:
    return {"progress": False}


def test_gbk_csv_with_chinese_titles_accepts_rows_and_rejects_bad_ones(tmp_path: Path) -> None:
    rows = [r for r in erp_records("customer", 40) if _gbk(r)][:8]
    rows[3] = dict(rows[3], KTOKD="Z999")  # unknown code
    path = tmp_path / "客户导出.csv"
    write_csv(path, CUSTOMER_TITLES, rows, "gbk")
    # A row cut short by a broken export, and a row with bytes that are not GBK.
    path.write_bytes(path.read_bytes() + b"0000999999,Z001\r\n" + b"\xff\xfe,\x81\r\n")

    run = import_file("erp", "customer", path, **quiet())
    results = list(run)

    assert run.summary.encoding == "gb18030"
    accepted = [(n, r) for n, r in results if isinstance(r, Envelope)]
    rejected = {n: r for n, r in results if isinstance(r, Rejection)}
    assert len(accepted) == 7
    assert accepted[0][1].body["name"].startswith(rows[0]["NAME1"])
    assert set(rejected) == {5, 10, 11}  # header is row 1, so rows[3] is row 5
    assert (rejected[5].field, rejected[5].value) == ("KTOKD", "Z999")
    assert "unknown code in value map erp.account_group" in rejected[5].rule
    assert rejected[10].field == "row" and "must have 24 columns" in rejected[10].rule
    assert rejected[11].field == "encoding" and "gb18030" in rejected[11].rule
    assert rejected[5].source == "file:客户导出.csv" and rejected[5].position == 5
    assert (run.summary.accepted, run.summary.rejected) == (7, 3)


def _gbk(record: dict[str, Any]) -> bool:
    try:
        "".join(str(v) for v in record.values()).encode("gbk")
        return True
    except UnicodeEncodeError:
        return False


def test_utf8_bom_csv_with_field_names(tmp_path: Path) -> None:
    from connectors.crm.simulator import generate

    cards = [r for e, r in itertools.islice(generate(4, 0.2), 80) if e == "customer"][:5]
    fields = ["cust_no", "cust_name", "cust_type", "mobile", "status", "frozen", "create_time"]
    path = tmp_path / "customers.csv"
    write_csv(path, {f: f for f in fields}, cards, "utf-8-sig")
    run = import_file("crm", "customer", path, **quiet())
    results = list(run)
    assert run.summary.encoding == "utf-8-sig"
    assert [n for n, _ in results] == [2, 3, 4, 5, 6]
    assert all(isinstance(r, Envelope) for _, r in results)


def test_xlsx_with_typed_cells(tmp_path: Path) -> None:
    materials = erp_records("material", 5)
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(MATERIAL_TITLES))
    for m in materials:
        row: list[Any] = [m.get(f) for f in MATERIAL_TITLES.values()]
        # Excel turns typed dates into date cells; the importer must read them back.
        row[list(MATERIAL_TITLES.values()).index("ERSDA")] = datetime(2026, 11, 24)
        ws.append(row)
    ws.append(["4000000099", "彩盒", "VERP", "PK", "KAR", None, None, None, "", "2026-13-01"])
    ws.append([None] * len(MATERIAL_TITLES))  # trailing empty row Excel leaves behind
    path = tmp_path / "物料.xlsx"
    wb.save(path)

    console = Console(file=io.StringIO(), width=120)
    run = import_file("erp", "material", path, progress=True, console=console)
    results = list(run)
    envelopes = [r for _, r in results if isinstance(r, Envelope)]
    assert len(envelopes) == 5
    assert envelopes[0].body["attributes"]["erp.created_on"] == "2026-11-24"
    [(row_no, bad)] = [(n, r) for n, r in results if isinstance(r, Rejection)]
    assert row_no == 7 and bad.field == "ERSDA" and "calendar date" in bad.rule
    printed = console.file.getvalue()  # type: ignore[attr-defined]
    assert "accepted" in printed and "rejected" in printed and "ERSDA" in printed


def test_order_lines_are_grouped_under_their_order(tmp_path: Path) -> None:
    orders = erp_records("order", 3)
    flat = []
    for order in orders:
        for item in order["ITEMS"]:
            row = {k: v for k, v in order.items() if k != "ITEMS"}
            row.update({f"ITEMS.{k}": v for k, v in item.items()})
            flat.append(row)
    titles = dict(ORDER_TITLES)
    path = tmp_path / "orders.csv"
    write_csv(path, titles, flat, "gbk")
    run = import_file("erp", "order", path, **quiet())
    results = [r for _, r in run]
    assert all(isinstance(r, Envelope) for r in results)
    assert [len(r.body["lines"]) for r in results] == [len(o["ITEMS"]) for o in orders]  # type: ignore[union-attr]


def test_order_line_contradicting_its_header_is_rejected(tmp_path: Path) -> None:
    order = next(o for o in erp_records("order", 10) if len(o["ITEMS"]) >= 2)
    flat = []
    for i, item in enumerate(order["ITEMS"]):
        row = {k: v for k, v in order.items() if k != "ITEMS"}
        if i == 1:
            row["KUNNR"] = "0000199999"
        row.update({f"ITEMS.{k}": v for k, v in item.items()})
        flat.append(row)
    path = tmp_path / "orders.csv"
    write_csv(path, ORDER_TITLES, flat, "utf-8")
    results = list(import_file("erp", "order", path, **quiet()))
    bad = [(n, r) for n, r in results if isinstance(r, Rejection)]
    assert bad and bad[0][0] == 3
    assert "same header values on every line" in bad[0][1].rule


def test_unknown_column_stops_at_the_header_unless_ignored(tmp_path: Path) -> None:
    rows = erp_records("customer", 2)
    titles = {**CUSTOMER_TITLES, "备注": "remark"}
    path = tmp_path / "c.csv"
    write_csv(path, titles, rows, "utf-8")
    [(row_no, r)] = list(import_file("erp", "customer", path, **quiet()))
    assert row_no == 1 and isinstance(r, Rejection)
    assert (r.field, r.value) == ("column", "备注") and "ignore_columns" in r.rule
    results = list(import_file("erp", "customer", path, ignore_columns=["备注"], **quiet()))
    assert len(results) == 2 and all(isinstance(r, Envelope) for _, r in results)


def test_unreadable_files_are_one_rejection(tmp_path: Path) -> None:
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a workbook")
    [(row_no, r)] = list(import_file("erp", "material", broken, **quiet()))
    assert row_no == 0 and isinstance(r, Rejection) and r.field == "file"


def test_encoding_detection() -> None:
    text = "客户编号,名称1\n0000100001,深圳市华丰电器有限公司\n"
    assert detect_encoding(text.encode("utf-8")) == "utf-8"
    assert detect_encoding(text.encode("gbk")) == "gb18030"
    assert detect_encoding(b"\xef\xbb\xbf" + text.encode()) == "utf-8-sig"
