"""The model card: what a scorecard was trained on, how it bins, how well and how fairly it scores.

Written beside the artifact as ``<hash>.card.json`` (data) and ``<hash>.card.md``
(the same, for people). Sections: model, data, features (with category and
information value), refused columns with the reason, binning table per feature,
validation (out-of-fold AUC / Gini / KS, holdout PSI), scaling, fairness report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trustledger.aggregates import FOUR_FIFTHS, below_four_fifths, ratio_text
from trustledger.models.artifact import ScorecardArtifact, artifact_path
from trustledger.models.fairness import MIN_GROUP, FairnessReport
from trustledger.models.features import FeatureSelection
from trustledger.models.train import quiet_optbinning


def _plain(value: Any) -> Any:
    """Python numbers for numpy ones; NaN/inf become None (JSON has neither)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def build_card(
    artifact: ScorecardArtifact,
    reference: Any,
    selection: FeatureSelection,
    fairness: FairnessReport,
) -> dict[str, Any]:
    """The card's data, from the artifact, optbinning's fitted scorecard and the reports."""
    with quiet_optbinning():
        table = reference.table(style="detailed")
        summary = reference.binning_process_.summary().set_index("name")
    features = []
    binning: dict[str, list[dict[str, Any]]] = {}
    for f in artifact.features:
        rows = table[table["Variable"] == f.name].sort_values("Bin id")
        labels = [*f.labels, f.label(f.n_bins), f.label(f.n_bins + 1)]
        binning[f.name] = [
            {"bin": label, "count": _plain(r["Count"]), "share": _plain(r["Count (%)"]),
             "bad": _plain(r["Event"]), "bad_rate": _plain(r["Event rate"]),
             "woe": _plain(r["WoE"]), "iv": _plain(r["IV"]), "points": _plain(r["Points"])}
            for label, (_, r) in zip(labels, rows.iterrows(), strict=True)
        ]
        features.append({
            "name": f.name, "description": f.description, "category": f.category,
            "kind": f.kind, "bins": f.n_bins, "iv": _plain(summary.loc[f.name, "iv"]),
            "min_points": f.min_points, "max_points": f.max_points,
        })
    training = artifact.training
    return {
        "model": {"hash": artifact.content_hash, "range": list(artifact.score_range),
                  "scaling": dict(artifact.scaling), "target": dict(artifact.target)},
        "data": training.get("data"),
        "method": training.get("method"),
        "features": features,
        "refused": training.get("refused"),
        "fairness_groups": training.get("fairness_groups"),
        "binning": binning,
        "validation": training.get("validation"),
        "fairness": fairness.to_document(),
        "versions": training.get("versions"),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown."""
    m, data, v = card["model"], card["data"], card["validation"]
    out = [
        f"# Model card — scorecard `{m['hash'][:12]}`", "",
        f"- **Artifact hash:** `{m['hash']}`",
        f"- **Score range:** {m['range'][0]}-{m['range'][1]}; scaling: "
        + ", ".join(f"{k} = {val}" for k, val in m["scaling"].items()),
        f"- **Outcome:** `{m['target']['column']}`, bad = `{m['target']['bad']}`, "
        f"good = `{m['target']['good']}`",
        f"- **Data:** {data['name']} ({data['rows']} rows, bad rate {data['bad_rate']:.3f}), "
        f"SHA-256 `{data['sha256']}`",
        f"- **Method:** {card['method']['binning']} (monotonic trend "
        f"`{card['method']['monotonic_trend']}`) + {card['method']['estimator']}; points "
        f"{card['method']['points']}",
        "", "## Validation", "",
        "| measure | value |", "|---|---|",
        f"| AUC, {v['folds']}-fold stratified out-of-fold (seed {v['seed']}) | "
        f"{_fmt(v['oof_auc'])} |",
        f"| Gini, out-of-fold | {_fmt(v['oof_gini'])} |",
        f"| KS, out-of-fold | {_fmt(v['oof_ks'])} |",
        f"| AUC, holdout ({v['holdout_fraction']:.0%}) | {_fmt(v['holdout_auc'])} |",
        f"| PSI, training vs holdout scores | {_fmt(v['psi_train_holdout'], 4)} |",
        "", "## Features", "",
        "| feature | category | description | bins | IV | points |", "|---|---|---|---|---|---|",
    ]
    out += [f"| `{f['name']}` | {f['category']} | {f['description']} | {f['bins']} | "
            f"{_fmt(f['iv'])} | {f['min_points']:g} to {f['max_points']:g} |"
            for f in card["features"]]
    out += ["", "## Refused as features", ""]
    out += [f"- `{r['column']}` ({r['category']}): {r['reason']}" for r in card["refused"]] \
        or ["(none)"]
    out += ["", "## Binning tables", ""]
    for name, rows in card["binning"].items():
        out += [f"### `{name}`", "", "| bin | count | share | bad rate | WoE | IV | points |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['bin']} | {r['count']} | {_fmt(r['share'])} | {_fmt(r['bad_rate'])} | "
                f"{_fmt(r['woe'])} | {_fmt(r['iv'], 4)} | {_fmt(r['points'], 1)} |"
                for r in rows]
        out.append("")
    out += _fairness_markdown(card["fairness"], card["fairness_groups"])
    return "\n".join(out) + "\n"


def _fairness_markdown(report: dict[str, Any], columns: list[str]) -> list[str]:
    ts = report["thresholds"]
    out = [
        "## Fairness", "",
        f"On {report['scores']}, grouped by: {', '.join(f'`{c}`' for c in columns) or 'none'}. "
        f"Approval = score at or above the threshold; impact ratio = the group's approval "
        f"rate / the best group's; below {FOUR_FIFTHS} breaks the four-fifths rule (⚠). "
        f"Ratios are compared unrounded and shown with three decimals, or more where three "
        f"would round a flagged ratio up to {FOUR_FIFTHS:.3f}. "
        f"Groups under {MIN_GROUP} are suppressed.", "",
        "| column | group | n | bad rate | AUC | "
        + " | ".join(f"approval ≥{t:g} (ratio)" for t in ts) + " |",
        "|---|---|---|---|---|" + "---|" * len(ts),
    ]
    for g in report["groups"]:
        cells = []
        for t in ts:
            rate, ratio = g["approval"][f"{t:g}"], g["impact_ratio"][f"{t:g}"]
            flag = " ⚠" if below_four_fifths(ratio) else ""
            shown = "—" if ratio is None else ratio_text(ratio)
            cells.append("suppressed" if g["suppressed"] else f"{_fmt(rate)} ({shown}){flag}")
        out.append(f"| `{g['column']}` | {g['group']} | {g['n']} | {_fmt(g['bad_rate'])} | "
                   f"{_fmt(g['auc'])} | " + " | ".join(cells) + " |")
    flags = report["flags"]
    out += ["", f"**Four-fifths flags:** {len(flags)}", ""]
    out += [f"- `{f['column']}` = {f['group']} at {f['threshold']:g}: ratio "
            f"{ratio_text(f['ratio'])} (< {FOUR_FIFTHS})" for f in flags]
    return out


def card_paths(models_dir: Path, content_hash: str) -> tuple[Path, Path]:
    """Where a model's card lives: ``(<hash>.card.json, <hash>.card.md)``."""
    base = artifact_path(models_dir, content_hash)
    return base.with_suffix(".card.json"), base.with_suffix(".card.md")


def save_card(card: dict[str, Any], models_dir: Path) -> tuple[Path, Path]:
    """Write the card as JSON and Markdown beside its artifact; returns both paths."""
    json_path, md_path = card_paths(models_dir, card["model"]["hash"])
    models_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card, default=_plain, indent=2, sort_keys=True, ensure_ascii=False,
                      allow_nan=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(card), encoding="utf-8")
    return json_path, md_path
