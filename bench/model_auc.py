"""Out-of-fold AUC: trustledger's default training vs scikit-learn logistic regression, same folds.

Two data sets:

* German Credit (Statlog, ``tests/data/german_credit.csv``, 1,000 rows);
* the planted synthetic set of :mod:`trustledger.models.synthetic` (default 20,000 rows):
  a high-cardinality ``neighbourhood`` (1,500 Zipf-sized values), informative missingness
  in ``income`` and ``derogatory_records``, a planted proxy of ethnicity
  (``shopping_segment``), an identifier column (refused).

For each, trustledger's ``train`` (default options: 5 folds, seed 0) gives its
out-of-fold AUC; the baseline is a plain logistic regression (numerical features
median-imputed with a missing indicator and standardised, categorical ones one-hot,
``LogisticRegression(max_iter=2000)``) fitted on the very same folds
(``trustledger.models.train.fold_indices``) and the same feature columns. Also
reported: trustledger without its category pooling (to show what the regularisation
buys on the high-cardinality column), and the proxy flags of the planted set.

    .venv/bin/python bench/model_auc.py [--rows 20000] [--seed 0]

Writes ``bench/out/model_auc.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trustledger.models import fitting
from trustledger.models.features import load_dictionary, parse_dictionary
from trustledger.models.synthetic import planted_credit
from trustledger.models.train import (
    AuditData,
    TrainedModel,
    TrainingOptions,
    logistic_baseline_auc,
    train,
    train_file,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "german_credit.csv"


def oof_auc(model: TrainedModel) -> float:
    v = model.artifact.training["validation"]
    assert isinstance(v, dict)
    value = v["oof_auc"]
    assert isinstance(value, float)
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--german-seeds", type=int, default=6,
                        help="Also compare on German Credit over fold seeds 0..N-1.")
    args = parser.parse_args()
    results: dict[str, object] = {}

    started = time.perf_counter()
    german = train_file(DATA, load_dictionary(DATA.with_name("german_credit.columns.json")),
                        TrainingOptions(target="creditability", seed=args.seed))
    results["german_credit"] = {
        "rows": int(german.bad.size), "features": len(german.artifact.features),
        "trustledger_oof_auc": oof_auc(german),
        "logistic_regression_oof_auc": logistic_baseline_auc(german),
        "seconds": time.perf_counter() - started}

    dictionary_file = load_dictionary(DATA.with_name("german_credit.columns.json"))
    per_seed = []
    for seed in range(args.german_seeds):
        other = train_file(DATA, dictionary_file, TrainingOptions(target="creditability",
                                                                  seed=seed))
        per_seed.append((seed, oof_auc(other), logistic_baseline_auc(other)))
    results["german_credit_seeds"] = [{"seed": s, "trustledger_oof_auc": a,
                                       "logistic_regression_oof_auc": b}
                                      for s, a, b in per_seed]

    planted = planted_credit(args.rows, seed=args.seed)
    dictionary = parse_dictionary(planted.dictionary)
    options = TrainingOptions(target="default", seed=args.seed, row_id="row_id")
    audit = AuditData(planted.audit, "planted audit")
    started = time.perf_counter()
    model = train(planted.data, dictionary, options, audit=audit)
    seconds = time.perf_counter() - started
    # The same training with category pooling switched off (a category needs 1 row).
    kept = fitting.MIN_CATEGORY_ROWS, fitting.MAX_CATEGORY_SHARE
    fitting.MIN_CATEGORY_ROWS, fitting.MAX_CATEGORY_SHARE = 1, 1e-9
    try:
        unpooled = train(planted.data, dictionary, options, audit=audit)
    finally:
        fitting.MIN_CATEGORY_ROWS, fitting.MAX_CATEGORY_SHARE = kept
    without = train(planted.data, dictionary, TrainingOptions(
        target="default", seed=args.seed, row_id="row_id",
        features=tuple(n for n in model.artifact.feature_names if n != "neighbourhood")),
        audit=audit)
    neighbourhood = next(f for f in model.artifact.features if f.name == "neighbourhood")
    loose = next(f for f in unpooled.artifact.features if f.name == "neighbourhood")
    results["planted"] = {
        "rows": args.rows, "features": list(model.artifact.feature_names),
        "refused": [r.column for r in model.selection.refused],
        "trustledger_oof_auc": oof_auc(model),
        "logistic_regression_oof_auc": logistic_baseline_auc(model),
        "trustledger_without_pooling_oof_auc": oof_auc(unpooled),
        "trustledger_without_neighbourhood_oof_auc": oof_auc(without),
        "neighbourhood_points_span": neighbourhood.max_points - neighbourhood.min_points,
        "neighbourhood_points_span_without_pooling": loose.max_points - loose.min_points,
        "proxies_flagged": [str(r) for r in model.screen.flagged],
        "missing_rules": {f.name: f.missing_rule for f in model.artifact.features},
        "seconds": seconds}

    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_auc.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        print(f"{name}: {r['rows']} rows  trustledger OOF AUC {r['trustledger_oof_auc']:.4f}  "
              f"logistic regression (same folds) {r['logistic_regression_oof_auc']:.4f}  "
              f"difference {r['trustledger_oof_auc'] - r['logistic_regression_oof_auc']:+.4f}")
    for s, a, b in per_seed:
        print(f"german_credit seed {s}: trustledger {a:.4f}  logistic regression {b:.4f}  "
              f"difference {a - b:+.4f}")
    if per_seed:
        print(f"german_credit seeds 0-{len(per_seed) - 1}: mean trustledger "
              f"{np.mean([a for _, a, _ in per_seed]):.4f}, mean logistic regression "
              f"{np.mean([b for _, _, b in per_seed]):.4f}, worst difference "
              f"{min(a - b for _, a, b in per_seed):+.4f}")
    p = results["planted"]
    assert isinstance(p, dict)
    print(f"planted: without category pooling {p['trustledger_without_pooling_oof_auc']:.4f} "
          f"(neighbourhood spans {p['neighbourhood_points_span_without_pooling']:g} points; "
          f"pooled {p['neighbourhood_points_span']:g}); without neighbourhood "
          f"{p['trustledger_without_neighbourhood_oof_auc']:.4f}")
    print(f"planted: proxies flagged {p['proxies_flagged']}; refused {p['refused']}")
    print(f"planted: missing rules {p['missing_rules']}")
    print(pd.Series({k: v["seconds"] for k, v in results.items() if isinstance(v, dict)}
                    ).round(1).to_string())


if __name__ == "__main__":
    main()
