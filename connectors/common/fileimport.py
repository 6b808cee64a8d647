"""File import: CSV and XLSX exports, one row at a time, each row accepted or rejected.

Chinese ERP and CRM exports come in GBK as often as in UTF-8 (Excel on a Chinese Windows
saves "CSV" in the ANSI code page, which is GBK), with Chinese column titles. The importer
detects the encoding, maps titles to native field names, turns every row into a native record
and then into a canonical envelope, and reports each refused row with its row number as the
operator sees it in Excel (the header is row 1).

Rows that belong together (order lines repeating their order header, BOM items repeating the
parent) are grouped when the file has dotted columns such as ``items.POSNR``: consecutive rows
with the same record id become one record with a list of lines.
"""

from __future__ import annotations

import codecs
import csv
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from connectors.common.base import Connector, EntityBinding
from connectors.common.errors import NativeRecordError, Rejection, reject
from contracts.envelope import Envelope

# (row number, cells, raw bytes for the DLQ, error if the row could not even be read)
Row = tuple[int, list[str | None], bytes, NativeRecordError | None]

CHINESE_FAMILY = {"gb2312", "gbk", "gb18030", "hz", "big5", "big5hkscs", "cp950"}
SAMPLE_BYTES = 256 * 1024


def detect_encoding(data: bytes) -> str:
    """UTF-8 (with or without BOM) or GB18030, the superset of GBK and GB2312.

    Decoding GBK files as GB18030 matters: Excel writes rare name characters (镕, 堃) that
    GB2312 lacks; a GB2312 decoder would reject a valid row.
    """
    if data.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data[:SAMPLE_BYTES])
    guesses = [m.encoding.lower() for m in matches]
    # Short GBK samples also decode as Big5 or Shift-JIS; the ranking is unreliable among CJK
    # codecs, so a GB-family candidate that decodes wins.
    if any(g in CHINESE_FAMILY for g in guesses):
        try:
            data.decode("gb18030")
            return "gb18030"
        except UnicodeDecodeError:
            pass
    # A few broken lines (a truncated export, a pasted binary) must not hide the file's
    # encoding: decide by the lines that do decode, and reject the others row by row.
    lines = [line for line in data.split(b"\n") if any(b > 0x7F for b in line)]
    ok_utf8 = sum(1 for line in lines if _decodes(line, "utf-8"))
    ok_gb = sum(1 for line in lines if _decodes(line, "gb18030"))
    if lines and max(ok_utf8, ok_gb) * 2 >= len(lines):
        return "utf-8" if ok_utf8 >= ok_gb else "gb18030"
    best = matches.best()
    if best is None:
        raise reject(
            "encoding", f"{len(data)} bytes", "could not be detected (expected UTF-8 or GBK)"
        )
    return best.encoding


def _decodes(line: bytes, encoding: str) -> bool:
    try:
        line.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


@dataclass
class ImportSummary:
    path: str
    system: str
    entity: str
    encoding: str | None = None
    records: int = 0
    accepted: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first_row: dict[str, int] = field(default_factory=dict)

    def add(self, row_no: int, item: Envelope | Rejection) -> None:
        self.records += 1
        if isinstance(item, Rejection):
            self.rejected += 1
            key = f"{item.field}: {item.rule}"
            self.reasons[key] += 1
            self.first_row.setdefault(key, row_no)
        else:
            self.accepted += 1

    def table(self) -> Table:
        t = Table(title=f"{self.system}.{self.entity} from {Path(self.path).name}")
        t.add_column("result")
        t.add_column("rows", justify="right")
        t.add_column("first row", justify="right")
        t.add_row("[green]accepted", str(self.accepted), "")
        t.add_row("[red]rejected", str(self.rejected), "")
        for reason, n in self.reasons.most_common(10):
            t.add_row(f"  {reason}", str(n), str(self.first_row[reason]))
        return t


def _cell(value: Any) -> str | None:
    """An XLSX cell as the text the system would have exported."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        # Excel keeps every number as a float; 12.0 was typed as 12.
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    return text or None


class FileImport(Iterator[tuple[int, Envelope | Rejection]]):
    """Iterate to import; ``summary`` is complete once iteration ends."""

    def __init__(
        self,
        connector: Connector,
        entity: str,
        path: str | Path,
        *,
        progress: bool = True,
        console: Console | None = None,
        sheet: str | None = None,
        encoding: str | None = None,
        ignore_columns: Sequence[str] = (),
    ) -> None:
        self.connector = connector
        self.binding: EntityBinding = connector.inbound(entity)
        self.path = Path(path)
        self.sheet = sheet
        self.encoding = encoding
        self.ignore = set(ignore_columns)
        self.console = console or Console(stderr=True)
        self.show_progress = progress
        self.summary = ImportSummary(str(self.path), connector.system, entity)
        self._it = self._run()

    def __iter__(self) -> FileImport:
        return self

    def __next__(self) -> tuple[int, Envelope | Rejection]:
        return next(self._it)

    # ----------------------------------------------------------------- helpers
    @property
    def _source(self) -> str:
        return f"file:{self.path.name}"

    def _reject(self, row_no: int, exc: NativeRecordError, raw: bytes = b"") -> Rejection:
        r = Rejection.of(
            exc,
            system=self.connector.system,
            entity=self.binding.name,
            raw=raw,
            source=self._source,
            position=row_no,
        )
        self.connector.status.rejected(self.binding.name, r.reason)
        return r

    def _field_for(self, header: str) -> str:
        titles = self.binding.column_titles
        if header in titles:
            return titles[header]
        return header

    def _check_headers(self, headers: list[str]) -> list[str | None]:
        fields = self.binding.native.model_fields
        aliases = {f.alias: n for n, f in fields.items() if f.alias}
        out: list[str | None] = []
        for h in headers:
            if h in self.ignore:
                out.append(None)
                continue
            name = self._field_for(h)
            root = name.split(".", 1)[0]
            if root not in fields and root not in aliases:
                known = ", ".join([*self.binding.column_titles, *fields])
                raise reject(
                    "column",
                    h,
                    f"is not a field of {self.connector.system}.{self.binding.name} "
                    f"(known: {known}); pass ignore_columns to skip it",
                )
            out.append(name)
        return out

    def _records(
        self, rows: Iterator[Row], headers: list[str | None]
    ) -> Iterator[tuple[int, dict[str, Any] | Rejection]]:
        """Rows -> native dicts, grouping dotted line columns under their record id.

        Streaming with one open group: a record is emitted when the next row carries another
        id, so a 100k-line export is never held in memory.
        """
        width = len(headers)
        id_fields = self.binding.id_fields

        def key_of(record: dict[str, Any]) -> tuple[Any, ...] | None:
            key = tuple(record.get(f) for f in id_fields)
            return None if any(k is None for k in key) else key

        group: tuple[int, dict[str, Any]] | None = None
        for row_no, cells, raw, error in rows:
            if error is not None:
                yield row_no, self._reject(row_no, error, raw)
                continue
            if all(c is None for c in cells):
                continue  # Excel leaves blank rows at the end of a sheet
            if len(cells) > width and all(c is None for c in cells[width:]):
                # Empty trailing cells are spreadsheet formatting, not data.
                cells = cells[:width]
            if len(cells) != width:
                yield (
                    row_no,
                    self._reject(
                        row_no,
                        reject(
                            "row",
                            f"{len(cells)} columns",
                            f"must have {width} columns like the header",
                        ),
                        raw,
                    ),
                )
                continue
            head: dict[str, Any] = {}
            line: dict[str, Any] = {}
            lines_field = None
            for name, value in zip(headers, cells, strict=True):
                if name is None or value is None:
                    continue
                if "." in name:
                    lines_field, sub = name.split(".", 1)
                    line[sub] = value
                else:
                    head[name] = value
            if lines_field is None:
                yield row_no, head
                continue
            if group is not None and key_of(head) is not None and key_of(group[1]) == key_of(head):
                first = {k: v for k, v in group[1].items() if k != lines_field}
                if first != head:
                    yield (
                        row_no,
                        self._reject(
                            row_no,
                            reject(
                                "/".join(id_fields),
                                "/".join(str(k) for k in key_of(head) or ()),
                                "must repeat the same header values on every line "
                                f"(row {group[0]} differs)",
                            ),
                            raw,
                        ),
                    )
                    continue
                group[1][lines_field].append(line)
                continue
            if group is not None:
                yield group
            head[lines_field] = [line] if line else []
            group = (row_no, head)
        if group is not None:
            yield group

    # ----------------------------------------------------------------- readers
    def _csv_rows(self, data: bytes, encoding: str) -> Iterator[Row]:
        """CSV records with their first physical line number.

        Lines are decoded one by one so that a single row with broken bytes is rejected on
        its own instead of failing the whole file. Splitting on 0x0A is safe for UTF-8 and
        GB18030: neither uses that byte inside a multi-byte character.
        """
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        good: list[tuple[int, bytes, str]] = []
        bad: dict[int, bytes] = {}
        for i, chunk in enumerate(lines, start=1):
            try:
                good.append((i, chunk, chunk.decode(encoding).rstrip("\r")))
            except UnicodeDecodeError:
                bad[i] = chunk
        try:
            dialect: Any = (
                csv.Sniffer().sniff(good[0][2], delimiters=",\t;|") if good else csv.excel
            )
        except csv.Error:
            dialect = csv.excel
        consumed = 0

        def feed() -> Iterator[str]:
            nonlocal consumed
            for _, _, text in good:
                consumed += 1
                yield text + "\n"

        reader = csv.reader(feed(), dialect)
        next_bad = sorted(bad)
        while True:
            start = consumed  # index into good of the record's first line
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                row_no, chunk, _ = good[min(start, len(good) - 1)]
                yield row_no, [], chunk, reject("row", chunk[:80], f"malformed CSV: {exc}")
                continue
            row_no = good[start][0]
            while next_bad and next_bad[0] < row_no:
                n = next_bad.pop(0)
                yield n, [], bad[n], reject("encoding", bad[n][:40], f"row is not valid {encoding}")
            raw = b"\n".join(c for _, c, _ in good[start:consumed])
            yield row_no, [c.strip() or None for c in cells], raw, None
        for n in next_bad:
            yield n, [], bad[n], reject("encoding", bad[n][:40], f"row is not valid {encoding}")

    def _xlsx_rows(self) -> Iterator[Row]:
        from openpyxl import load_workbook

        wb = load_workbook(self.path, read_only=True, data_only=True)
        try:
            ws = wb[self.sheet] if self.sheet else wb.worksheets[0]
            for i, values in enumerate(ws.iter_rows(values_only=True), start=1):
                cells = [_cell(v) for v in values]
                yield i, cells, repr(values).encode(), None
        finally:
            wb.close()

    def _open(self) -> tuple[Iterator[Row], int | None]:
        suffix = self.path.suffix.lower()
        if suffix in (".xlsx", ".xlsm"):
            from openpyxl import load_workbook

            self.summary.encoding = "xlsx"
            wb = load_workbook(self.path, read_only=True)
            ws = wb[self.sheet] if self.sheet else wb.worksheets[0]
            total = max((ws.max_row or 1) - 1, 0)
            wb.close()
            return self._xlsx_rows(), total
        data = self.path.read_bytes()
        encoding = self.encoding or detect_encoding(data)
        self.summary.encoding = encoding
        return self._csv_rows(data, encoding), max(data.count(b"\n") - 1, 0)

    # ----------------------------------------------------------------- the run
    def _run(self) -> Iterator[tuple[int, Envelope | Rejection]]:
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[ok]} ok [red]{task.fields[bad]} rejected"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not self.show_progress,
        )
        with progress:
            try:
                rows, total = self._open()
            except NativeRecordError as exc:
                yield self._emit(0, self._reject(0, exc))
                return
            except Exception as exc:  # a corrupt XLSX raises from zipfile, lxml or KeyError
                err = reject("file", self.path.name, f"cannot be read: {type(exc).__name__}: {exc}")
                yield self._emit(0, self._reject(0, err))
                return
            task = progress.add_task(self.path.name, total=total, ok=0, bad=0)
            headers: list[str | None] | None = None
            for row_no, cells, raw, error in rows:
                if error is None and all(c is None for c in cells):
                    continue
                if error is not None:
                    yield self._emit(row_no, self._reject(row_no, error, raw))
                    continue
                try:
                    headers = self._check_headers([c or "" for c in cells])
                except NativeRecordError as exc:
                    yield self._emit(row_no, self._reject(row_no, exc, raw))
                    return
                break
            if headers is None:
                return

            def counted(it: Iterator[Row]) -> Iterator[Row]:
                for row in it:
                    progress.update(task, advance=1)
                    yield row

            for row_no, item in self._records(counted(rows), headers):
                if isinstance(item, Rejection):
                    yield self._emit(row_no, item)
                else:
                    for _, result in self.connector.decode_records(
                        self.binding.name, [(row_no, item)], source=self._source
                    ):
                        yield self._emit(row_no, result)
                progress.update(task, ok=self.summary.accepted, bad=self.summary.rejected)
        if self.show_progress:
            self.console.print(self.summary.table())

    def _emit(self, row_no: int, item: Envelope | Rejection) -> tuple[int, Envelope | Rejection]:
        self.summary.add(row_no, item)
        return row_no, item


def import_file(
    system: str,
    entity: str,
    path: str | Path,
    *,
    connector: Connector | None = None,
    progress: bool = True,
    console: Console | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
    ignore_columns: Sequence[str] = (),
) -> FileImport:
    """Import a CSV or XLSX file: an iterator of (row number, Envelope or Rejection).

    ``connector`` defaults to the registered one; pass a configured copy to use an operator's
    value-map override.
    """
    if connector is None:
        from connectors.registry import CONNECTORS

        connector = CONNECTORS[system]
    return FileImport(
        connector,
        entity,
        path,
        progress=progress,
        console=console,
        sheet=sheet,
        encoding=encoding,
        ignore_columns=ignore_columns,
    )
