"""The default classifier and rater measured on the real sources, validated on sources/files training never saw.

``pytest -s -m shared_data tests/test_classify_shared_data.py`` prints the figures. The full-size measurement
(default caps, the numbers quoted in the issue) is the CLI: ``medcorpus build-labelled`` then
``medcorpus train-classifier`` / ``train-rater`` (see docs/classify.md). This test uses smaller caps.
"""

from __future__ import annotations

import json

import pytest

from medcorpus.config import ClassifyConfig, NormalizeConfig
from medcorpus.labelled import BuildParams, build_from_shared_data
from medcorpus.training import fit_domain, fit_rater, rows_frame
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


def test_default_models_on_held_out_real_data():
    root = shared_data_path()
    cfg = ClassifyConfig()
    params = BuildParams(train_cap=400, validation_cap=150, validation_percent=cfg.validation_percent,
                         holdout_sources=cfg.holdout_sources, synthetic_percent=cfg.synthetic_percent)
    frame = rows_frame(build_from_shared_data(root, params, NormalizeConfig()))
    train, validation = frame[frame["split"] == "train"], frame[frame["split"] == "validation"]

    # validation rows come from files (or whole sources) that training never saw
    train_groups = set(zip(train["source"], train["group"]))
    assert not any((s, g) in train_groups for s, g in zip(validation["source"], validation["group"]))
    for held in cfg.holdout_sources:
        assert held not in set(train["source"]) and held in set(validation["source"])

    domain, dm = fit_domain(train, validation, cfg)
    rater, rm = fit_rater(train, validation, cfg)
    print(json.dumps({"domain": dm["domain"], "subdomain_accuracy": dm["subdomain"]["accuracy"],
                      "subdomain_cm": dm["subdomain"]["confusion_matrix"], "by_source": dm["domain_accuracy_by_source"],
                      "rater": rm["all"], "rater_real": rm["real_rows"]}, indent=1))
    assert dm["domain"]["per_class"]["medical"]["f1"] >= 0.95
    assert dm["subdomain"]["accuracy"] >= 0.8
    assert rm["all"]["mse"] < 0.5 * rm["all"]["baseline_mse"]
