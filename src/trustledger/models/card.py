"""The model card: what a scorecard was trained on, how it bins, how well and how fairly it scores.

Written beside the artifact as ``<hash>.card.json`` (data) and ``<hash>.card.md``
(the same, for people). Sections: model (with its audit status: an unaudited model
says so first), data, features (with category and information value), refused columns
with the reason (never their values), binning table per feature (with the rule that
gave the special and missing bins their points), validation (out-of-fold AUC / Gini /
KS, holdout PSI), scaling, fairness report, proxy screen.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trustledger.aggregates import FOUR_FIFTHS, below_four_fifths, ratio_text
from trustledger.models.artifact import ScorecardArtifact, artifact_path
from trustledger.models.audit import PROXY_THRESHOLD, ProxyScreen
from trustledger.models.fairness import MIN_GROUP, FairnessReport
from trustledger.models.fitting import RULE_EVIDENCE, FittedScorecard


def _plain(value: Any) -> Any:
    """Python numbers for numpy ones; NaN/inf become None (JSON has neither)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _rule_words(rule: str, rows: int, min_rows: int) -> str:
    if rule == RULE_EVIDENCE or not rule:
        return rule
    if rule.startswith("too few"):
        return f"{rule} ({rows} rows < minimum bin size {min_rows})"
    return rule


def build_card(
    artifact: ScorecardArtifact,
    fitted: FittedScorecard,
    fairness: FairnessReport,
    screen: ProxyScreen,
) -> dict[str, Any]:
    """The card's data, from the artifact, the fitted evidence and the reports."""
    features = []
    binning: dict[str, list[dict[str, Any]]] = {}
    total = int(sum(int(f.rows.sum()) for f in fitted.features[:1]))
    for fit in fitted.features:
        f = fit.bins
        labels = [*f.labels, f.label(f.n_bins), f.label(f.n_bins + 1)]
        points = [*f.points, f.special_points, f.missing_points]
        rules = [""] * f.n_bins + [
            _rule_words(f.special_rule, int(fit.rows[f.n_bins]), fitted.min_bin_rows),
            _rule_words(f.missing_rule, int(fit.rows[f.n_bins + 1]), fitted.min_bin_rows)]
        rows = []
        for i, label in enumerate(labels):
            n, bad = int(fit.rows[i]), int(fit.bad[i])
            rows.append({"bin": label, "count": n, "share": n / total if total else None,
                         "bad": bad, "bad_rate": bad / n if n else None,
                         "woe": _plain(fit.woe[i]) if n else None, "points": points[i],
                         "rule": rules[i]})
        binning[f.name] = rows
        features.append({
            "name": f.name, "description": f.description, "category": f.category,
            "kind": f.kind, "bins": f.n_bins, "iv": round(fit.iv, 6),
            "min_points": f.min_points, "max_points": f.max_points,
        })
    training = artifact.training
    audit = training.get("audit")
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
        "audit": audit,
        "proxy_screen": screen.to_document(),
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
    audit = card.get("audit")
    audited = isinstance(audit, dict) and audit.get("status") == "audited"
    out = [f"# Model card — scorecard `{m['hash'][:12]}`", ""]
    if not audited:
        why = audit.get("reason") if isinstance(audit, dict) else "no audit recorded"
        out += [f"> **UNAUDITED.** {why}. Its fairness and proxies were not measured on "
                "protected attributes; a policy may not use it for a restriction.", ""]
    out += [
        f"- **Artifact hash:** `{m['hash']}`",
        f"- **Audit:** {audit.get('reason') if isinstance(audit, dict) else 'unaudited'}",
        f"- **Score range:** {m['range'][0]}-{m['range'][1]}; scaling: "
        + ", ".join(f"{k} = {val}" for k, val in m["scaling"].items()),
        f"- **Outcome:** `{m['target']['column']}`, bad = `{m['target']['bad']}`, "
        f"good = `{m['target']['good']}`",
        f"- **Data:** {data['name']} ({data['rows']} rows, bad rate {data['bad_rate']:.3f}), "
        f"SHA-256 `{data['sha256']}`",
        f"- **Method:** {card['method']['binning']} (monotonic trend "
        f"`{card['method']['monotonic_trend']}`) + {card['method']['estimator']}; points "
        f"{card['method']['points']}",
        *([f"- **Missing and special values:** {card['method']['missing_and_special']} "
           f"(minimum bin size: {card['method']['min_bin_share']:.0%} of the rows; categories "
           f"under {card['method']['category_cutoff']:.2%} of the rows pooled)"]
          if "missing_and_special" in card["method"] else []),
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
        out += [f"### `{name}`", "", "| bin | count | share | bad rate | WoE | points | rule |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| {r['bin']} | {r['count']} | {_fmt(r['share'])} | {_fmt(r['bad_rate'])} | "
                f"{_fmt(r['woe'])} | {_fmt(r['points'], 1)} | {r.get('rule', '')} |"
                for r in rows]
        out.append("")
    out += _fairness_markdown(card["fairness"], card["fairness_groups"])
    out += _proxy_markdown(card.get("proxy_screen"), audit)
    return "\n".join(out) + "\n"


def _proxy_markdown(screen: dict[str, Any] | None, audit: Any) -> list[str]:
    out = ["", "## Proxy screen", ""]
    known = audit.get("known_proxies", []) if isinstance(audit, dict) else []
    pairs = screen.get("pairs", []) if isinstance(screen, dict) else []
    if not pairs:
        out.append("Not measured: no protected attribute was available.")
    else:
        out += [f"Each feature's bins against each protected attribute's groups: "
                f"bias-corrected Cramér's V (flagged ⚠ at {PROXY_THRESHOLD} or more) and "
                "mutual information in bits.", "",
                "| feature | attribute | Cramér's V | MI (bits) | rows |", "|---|---|---|---|---|"]
        for p in sorted(pairs, key=lambda p: (-p["cramers_v"], p["feature"], p["attribute"])):
            flag = " ⚠" if p["flagged"] else ""
            out.append(f"| `{p['feature']}` | `{p['attribute']}` | {p['cramers_v']:.3f}{flag} | "
                       f"{p['mutual_information_bits']:.4f} | {p['rows']} |")
        flagged = [p for p in pairs if p["flagged"]]
        out += ["", f"**Proxies flagged:** {len(flagged)}"]
    if known:
        out += ["", "Known proxies by name (allowed, to be judged):", ""]
        out += [f"- `{k['feature']}`: {k['reason']}" for k in known]
    return out


def _fairness_markdown(report: dict[str, Any], columns: list[str]) -> list[str]:
    ts = report["thresholds"]
    if not columns:
        return ["## Fairness", "",
                "**Not audited:** no protected attribute was in the data or an audit file, "
                "so no adverse-impact ratio could be computed. Train with "
                "`--audit FILE --id COLUMN` to measure them."]
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
