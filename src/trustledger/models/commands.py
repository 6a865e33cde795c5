"""Command-line commands of the models area: ``trustledger model train|list|show|verify|score``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from trustledger.errors import InputError, NotFoundError
from trustledger.options import JsonFlag, print_json

console = Console()

ModelsOption = Annotated[
    Path | None,
    typer.Option("--models", envvar="TRUSTLEDGER_MODELS",
                 help="Models folder (default: $TRUSTLEDGER_DATA/models)."),
]


def _models_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    from trustledger.models.artifact import default_models_dir

    return default_models_dir()


def writable_folder(folder: Path, what: str) -> None:
    """Make sure ``folder`` exists (creating it) and can be written, before any work starts."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise InputError(f"{what} {folder}: cannot write there "
                         f"({exc.strerror or exc.__class__.__name__}); nothing was trained"
                         ) from exc


def train(
    data: Annotated[Path, typer.Argument(help="Training data: CSV or Parquet, one row a person.")],
    target: Annotated[str, typer.Option(help="The outcome column (two values: good / bad).")],
    score_range: Annotated[tuple[int, int], typer.Option(
        "--range", help="Lowest and highest score.")] = (350, 950),
    bad: Annotated[str | None, typer.Option(
        help="The target value that means bad (default: 1 of 0/1, or 'bad').")] = None,
    columns: Annotated[Path | None, typer.Option(
        help="Data dictionary (JSON): category and description of each column "
             "(default: DATA's name with .columns.json).")] = None,
    feature: Annotated[list[str] | None, typer.Option(
        help="Use only these features (repeatable; default: every allowed column).")] = None,
    group: Annotated[list[str] | None, typer.Option(
        help="Fairness-report grouping column (repeatable; default: the protected ones).")
    ] = None,
    tier: Annotated[list[float] | None, typer.Option(
        help="Tier threshold for the fairness report (repeatable; default 550 600 650 700).")
    ] = None,
    folds: Annotated[int, typer.Option(help="Folds of the out-of-fold validation.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold and holdout splits.")] = 0,
    pdo: Annotated[float | None, typer.Option(
        help="Points to double the odds (with --odds and --points; default: fit the range).")
    ] = None,
    odds: Annotated[float | None, typer.Option(help="Good:bad odds at --points.")] = None,
    points: Annotated[float | None, typer.Option(help="Score at --odds.")] = None,
    audit: Annotated[Path | None, typer.Option(
        help="Audit file (CSV or Parquet): protected attributes per row id, for the fairness "
             "report and proxy screen only (needs --id).", metavar="FILE")] = None,
    row_id: Annotated[str | None, typer.Option(
        "--id", metavar="COLUMN", show_default=False,
        help="The column naming each row: joins --audit; never a feature.")] = None,
    models: ModelsOption = None,
) -> None:
    """Train a statistical scorecard; write its artifact (named by hash) and model card."""
    from trustledger.models.artifact import save_artifact
    from trustledger.models.card import save_card
    from trustledger.models.features import load_dictionary
    from trustledger.models.train import DEFAULT_TIERS, PdoScaling, TrainingOptions, train_file

    scaling_args = (pdo, odds, points)
    if any(a is not None for a in scaling_args) and None in scaling_args:
        raise InputError("--pdo, --odds and --points go together: give all three or none")
    scaling = PdoScaling(pdo, odds, points) if (
        pdo is not None and odds is not None and points is not None) else None
    options = TrainingOptions(
        target=target, bad=bad, score_range=score_range,
        features=tuple(feature) if feature else None, groups=tuple(group) if group else None,
        tiers=tuple(tier) if tier else DEFAULT_TIERS, folds=folds, seed=seed, pdo=scaling,
        row_id=row_id,
    )
    if audit is not None and row_id is None:
        raise InputError("--audit needs --id COLUMN: the row id that joins the audit file")
    if not data.is_file():
        raise NotFoundError(f"data file not found: {data}")
    if audit is not None and not audit.is_file():
        raise NotFoundError(f"audit file not found: {audit}")
    dictionary = load_dictionary(columns or data.with_name(f"{data.stem}.columns.json"))
    folder = _models_dir(models)
    writable_folder(folder, "--models")
    with console.status(f"training on {data} ({folds}-fold validation)"):
        trained = train_file(data, dictionary, options, audit=audit)
    artifact_file = save_artifact(trained.artifact, folder)
    card_json, card_md = save_card(trained.card, folder)
    for r in trained.selection.refused:
        console.print(f"[yellow]refused[/] {r}", highlight=False)
    v = trained.artifact.training["validation"]
    assert isinstance(v, dict)
    console.print(f"features: {', '.join(trained.artifact.feature_names)}", highlight=False)
    console.print(f"out-of-fold AUC {v['oof_auc']:.4f}  Gini {v['oof_gini']:.4f}  "
                  f"KS {v['oof_ks']:.4f}  holdout PSI {v['psi_train_holdout']:.4f}")
    for flag in trained.fairness.flags:
        console.print(f"[red]four-fifths[/] {flag}", highlight=False)
    for proxy in trained.screen.flagged:
        console.print(f"[red]proxy[/] {proxy}", highlight=False)
    audit_doc = trained.artifact.training.get("audit")
    known_proxies = audit_doc.get("known_proxies") if isinstance(audit_doc, dict) else None
    for known in known_proxies if isinstance(known_proxies, list) else []:
        if isinstance(known, dict):
            console.print(f"[yellow]known proxy[/] {known.get('feature')}: "
                          f"{known.get('reason')}", highlight=False)
    if trained.audit.audited:
        console.print(trained.audit.reason, highlight=False)
    else:
        console.print(f"[red]UNAUDITED[/] {trained.audit.reason}; a policy may not use this "
                      "model for a restriction", highlight=False)
    console.print(f"model {trained.artifact.content_hash}")
    console.print(f"wrote {artifact_file}, {card_md}, {card_json}", highlight=False)


def list_models(models: ModelsOption = None, json_out: JsonFlag = False) -> None:
    """List the model artifacts in the models folder: hash, data, features, range, AUC, audit."""
    from trustledger.models.artifact import list_artifacts, load_artifact
    from trustledger.models.audit import audit_status

    folder = _models_dir(models)
    rows: list[tuple[str, str | None, int, tuple[int, int], float | None]] = []
    audited: dict[str, bool] = {}
    for h in list_artifacts(folder):
        artifact = load_artifact(folder, h)
        data = artifact.training.get("data")
        v = artifact.training.get("validation")
        name = data.get("name") if isinstance(data, dict) else None
        auc = v.get("oof_auc") if isinstance(v, dict) else None
        audited[h] = audit_status(artifact).audited
        rows.append((h, name if isinstance(name, str) else None, len(artifact.features),
                     (artifact.score_range[0], artifact.score_range[1]),
                     auc if isinstance(auc, float) else None))
    if json_out:
        print_json([{"hash": h, "data": name, "features": n, "score_range": list(span),
                     "oof_auc": auc, "audited": audited[h]} for h, name, n, span, auc in rows])
        return
    if not rows:
        console.print(f"no models in {folder}", highlight=False)
        return
    # The full hash on a line of its own (`model show|verify|score` and policies name a
    # model by it), then its figures: fits 80 columns.
    for h, name, n, span, auc in rows:
        console.print(h, highlight=False, soft_wrap=True)
        console.print(f"  data {name or '?'} · {n} features · range {span[0]}-{span[1]} · "
                      f"AUC {f'{auc:.4f}' if auc is not None else '—'} · "
                      f"{'audited' if audited[h] else 'UNAUDITED'}", highlight=False)


def show(
    model: Annotated[str, typer.Argument(help="Model hash (or a unique prefix of 8+ digits).")],
    models: ModelsOption = None,
) -> None:
    """Print a model's card (Markdown), after verifying its artifact."""
    from trustledger.models.artifact import load_artifact, resolve_hash
    from trustledger.models.card import card_paths

    folder = _models_dir(models)
    h = resolve_hash(folder, model)
    load_artifact(folder, h)
    _, md = card_paths(folder, h)
    if not md.is_file():
        raise NotFoundError(f"no model card for {h} in {folder}")
    sys.stdout.write(md.read_text(encoding="utf-8"))


def verify(
    model: Annotated[str, typer.Argument(help="Model hash (or a unique prefix of 8+ digits).")],
    models: ModelsOption = None,
) -> None:
    """Check that a model artifact's content matches its hash."""
    from trustledger.models.artifact import load_artifact, resolve_hash

    folder = _models_dir(models)
    h = resolve_hash(folder, model)
    artifact = load_artifact(folder, h)
    console.print(f"ok {h}: {len(artifact.features)} features, range "
                  f"{artifact.score_range[0]}-{artifact.score_range[1]}", highlight=False)


def score(
    model: Annotated[str, typer.Argument(help="Model hash (or a unique prefix of 8+ digits).")],
    data: Annotated[Path, typer.Argument(help="Rows to score: CSV or Parquet.")],
    output: Annotated[Path | None, typer.Option(
        help="File to write, .csv or .parquet (score and up to four reasons per row); "
             "default: CSV on standard output.",
        metavar="FILE")] = None,
    id_column_name: Annotated[str | None, typer.Option(
        "--id", metavar="COLUMN", show_default=False,
        help="The column of DATA that names each row, copied as the first output column "
             "(default: a column named id, if DATA has one; else the row number, from 1).")
    ] = None,
    models: ModelsOption = None,
) -> None:
    """Score every row of a file with the compiled scorecard, with reason codes.

    Each output row starts with the input row's id (--id COLUMN), so scores can be
    joined back to the rows they are about. Rows are read and written in batches;
    an infinite value or a text in a numerical column is refused, naming column and
    row, and leaves no output file.
    """
    from trustledger.models.artifact import resolve_hash
    from trustledger.models.batch_scoring import check_output, score_file
    from trustledger.models.compiled import CompiledScorecard

    if output is not None:
        check_output(output, data)
    folder = _models_dir(models)
    scorecard = CompiledScorecard.load(folder, resolve_hash(folder, model))
    scored = score_file(scorecard, data, output, id_column=id_column_name)
    if output is not None:
        console.print(f"scored {scored.rows:,} rows with {scorecard.hash[:12]} → {output}",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ``model`` command group to the root CLI."""
    model_app = typer.Typer(name="model", no_args_is_help=True, rich_markup_mode=None,
                            help="Statistical scorecards: train, inspect, verify, score.")
    model_app.command("train")(train)
    model_app.command("list")(list_models)
    model_app.command("show")(show)
    model_app.command("verify")(verify)
    model_app.command("score")(score)
    app.add_typer(model_app, name="model")
