"""`eai-hub dedup`: batch deduplication of a JSONL backlog and pairwise evaluation."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from flows.identity.batch import (
    InputError,
    InputRow,
    PairwiseMetrics,
    default_workers,
    evaluate,
    gc_paused,
    read_rows,
    run_batch,
    run_batch_file,
    write_rows,
)
from flows.identity.config import IdentityConfig
from flows.identity.config_file import load_matching
from flows.identity.scoring import Model

dedup_app = typer.Typer(
    name="dedup",
    help="Identity resolution: deduplicate customers or materials into golden records.",
    no_args_is_help=True,
)
_err = Console(stderr=True)


class Entity(StrEnum):
    customer = "customer"
    material = "material"


def _load_config(path: Path | None) -> IdentityConfig:
    """The matching settings of ``--config``: the hub's ``EAI_IDENTITY_CONFIG`` file as it is,
    or the matching keys alone; the same loader as the hub, so the same errors."""
    if path is None:
        return IdentityConfig()
    try:
        return load_matching(path)
    except ValueError as exc:  # IdentityConfigError: names the file, key path, value and rule
        _err.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc


def _read(path: Path) -> list[InputRow]:
    try:
        with gc_paused():  # 100,000 parsed records are many objects: see gc_paused
            return list(read_rows(path))
    except InputError as exc:
        _err.print(f"[red]{path}: {exc}[/red]")
        raise typer.Exit(2) from exc


@dedup_app.command("batch")
def batch_command(
    entity: Annotated[Entity, typer.Option(help="Kind of record in the input.")],
    input: Annotated[Path, typer.Option("--input", exists=True, dir_okay=False, help="IN.jsonl")],
    output: Annotated[Path, typer.Option("--output", dir_okay=False, help="OUT.jsonl")],
    explain: Annotated[bool, typer.Option(help="Add each decision's evidence.")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The hub's EAI_IDENTITY_CONFIG file, or its matching keys alone (JSON/YAML).",
        ),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Use this fitted model, do not fit."),
    ] = None,
    save_model: Annotated[
        Path | None, typer.Option(dir_okay=False, help="Write the fitted model here.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes that parse and normalize records and share fit's work "
            "[default: the CPUs usable].",
        ),
    ] = None,
) -> None:
    """Assign every input record to a cluster (golden record); one output line per input line."""
    cfg = _load_config(config)
    started = time.perf_counter()
    fixed = Model.from_dict(json.loads(model.read_text(encoding="utf-8"))) if model else None
    if fixed is not None and fixed.entity != entity.value:
        _err.print(f"[red]model is for {fixed.entity}, not {entity.value}[/red]")
        raise typer.Exit(2)
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err,
        transient=False,
    ) as bar:
        # the number of records is known once the file is read, inside run_batch_file
        tasks = {
            stage: bar.add_task(stage, total=None, start=False)
            for stage in ("normalize", "fit", "resolve")
        }

        def progress(stage: str, advance: int, total: int) -> None:
            bar.start_task(tasks[stage])  # no-op once started; elapsed time is per stage
            bar.update(tasks[stage], advance=advance, total=total)

        try:
            # the lines are parsed by the processes that normalize them (decision 49)
            result = run_batch_file(
                entity.value,
                input,
                cfg,
                model=fixed,
                explain=explain,
                progress=progress,
                workers=workers or default_workers(),
            )
        except InputError as exc:
            _err.print(f"[red]{input}: {exc}[/red]")
            raise typer.Exit(2) from exc
    write_rows(output, result.rows)
    if save_model is not None:
        save_model.write_text(
            json.dumps(result.model.to_dict(), ensure_ascii=False), encoding="utf-8"
        )
    elapsed = time.perf_counter() - started
    actions = ", ".join(f"{k} {v}" for k, v in sorted(result.actions.items()))
    _err.print(
        f"{len(result.rows)} records -> {result.clusters} clusters ({actions}) in {elapsed:.1f} s; "
        f"prior {result.model.prior:.3g}"
    )


def _print_metrics(metrics: PairwiseMetrics) -> None:
    table = Table(title="pairwise", show_header=True)
    for column in ("precision", "recall", "F1", "true pairs", "predicted pairs", "records"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{metrics.precision:.4f}",
        f"{metrics.recall:.4f}",
        f"{metrics.f1:.4f}",
        str(metrics.true_pairs),
        str(metrics.predicted_pairs),
        str(metrics.records),
    )
    Console().print(table)
    if metrics.missing:
        _err.print(f"[yellow]{metrics.missing} truth records had no prediction[/yellow]")


@dedup_app.command("eval")
def eval_command(
    input: Annotated[
        Path,
        typer.Option(
            "--input",
            exists=True,
            dir_okay=False,
            help="Predicted clusters (OUT shape), or input records (IN shape) to run batch on.",
        ),
    ],
    truth: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="True clusters.")],
    entity: Annotated[Entity, typer.Option(help="Entity, when --input holds records.")] = (
        Entity.customer
    ),
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False)] = None,
) -> None:
    """Print pairwise precision, recall and F1 of predicted clusters against true ones."""
    lines = [json.loads(x) for x in input.read_text(encoding="utf-8-sig").splitlines() if x.strip()]
    truth_rows = [
        json.loads(x) for x in truth.read_text(encoding="utf-8-sig").splitlines() if x.strip()
    ]
    if lines and "cluster_id" not in lines[0] and "record" in lines[0]:
        rows = _read(input)
        lines = run_batch(entity.value, rows, _load_config(config)).rows
    _print_metrics(evaluate(lines, truth_rows))
