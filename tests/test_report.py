"""The run report, read the way a person reads it: rendered in headless Chromium, plots loaded, screenshot kept."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from medcorpus.core.runlog import StageReport, write_report
from medcorpus.core.warehouse import table_spec

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("headless Chromium not installed (`make test` installs the Debian package `chromium`)")


def _run_chromium(args: list[str], user_dir: Path) -> str:
    proc = subprocess.run([_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={user_dir}", *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _documents(ctx, n: int = 40):
    spec = table_spec("documents")
    df = ctx.spark.range(n).select(
        F.substring(F.sha2(F.col("id").cast("string"), 256), 1, 32).alias("doc_id"),
        F.lit("demo").alias("source"), F.lit("demo/docs.jsonl").alias("source_file"), F.lit("jsonl").alias("source_format"),
        F.lit(None).cast("string").alias("url"), F.lit(None).cast("string").alias("title"),
        F.lit(None).cast("string").alias("meta"),
        F.expr("repeat('病', 10 + cast(pow(id, 2) as int))").alias("text"),
        F.when(F.col("id") % 3 == 0, "en").otherwise("zh").alias("lang"), F.lit(0.9).alias("lang_confidence"),
        F.lit(False).alias("t2s_converted"), F.expr("10 + cast(pow(id, 2) as long)").alias("char_count"),
        F.expr("cast(7 + pow(id, 2) * 0.7 as long)").alias("token_estimate"),
        F.sha2(F.col("id").cast("string"), 256).alias("text_hash"), F.lit("r").alias("normalize_run_id"))
    return df.select(*spec.column_names)


def test_report_renders_in_chromium_with_plots(ctx, tmp_path):
    from medcorpus.quality.validation import validate_table
    from medcorpus.views.report import build_report

    ctx.warehouse.merge_new_rows("documents", _documents(ctx), "normalize")
    for stage, rin, out, reasons in (("ingest", 45, 42, {"malformed_json": 3}),
                                     ("normalize", 42, 40, {"empty_after_normalize": 2}),
                                     ("filter", 40, 31, {"too_short": 5, "mojibake": 3, "toxic": 1})):
        rep = StageReport(stage, rows_in=rin, rows_out=out, rows_quarantined=0, rows_removed=rin - out,
                          removed_by_reason=reasons)
        write_report(ctx.spark, ctx.warehouse, rep.finish())
    clusters = ctx.spark.createDataFrame(
        [(f"d{i}", f"c{i % 7 if i < 20 else i}", i % 7 == i if i < 20 else True,
          "keeper" if (i < 7 or i >= 20) else "near_duplicate", 1.0, "demo", "r") for i in range(30)],
        table_spec("dedup_clusters").schema)
    ctx.warehouse.merge_new_rows("dedup_clusters", clusters, "dedup")
    assert validate_table(ctx, "documents", stage="normalize").success

    path = build_report(ctx)
    page = path.read_text(encoding="utf-8")
    assert path.name == "run-test-run-1.html" and path.parent.name == "reports"
    for text in ("Funnel", "Removals per rule", "filter: too_short", "Validation (Great Expectations)",
                 "Distributions", "Language and sub-domain mix", 'href="data_docs/index.html"',
                 "Domain classifier calibration", 'alt="Reliability of domain_classifier-hngram-v3-'):
        assert text in page
    assert (path.parent / "data_docs" / "index.html").exists()
    docs_links = re.findall(r'href="(data_docs/validations/[^"]+)"', page)
    assert docs_links and all((path.parent / link).exists() for link in docs_links)
    n_images = page.count('<img class="plot"')
    assert n_images >= 5  # funnel, removals, length, cluster sizes, language

    dom = _run_chromium(["--virtual-time-budget=5000", "--dump-dom", path.as_uri()], tmp_path / "chrome1")
    assert f'data-images-total="{n_images}"' in dom
    assert f'data-images-loaded="{n_images}"' in dom, "some plots did not load in Chromium"
    assert '<p id="image-status"></p>' in dom  # the page's own broken-image notice stayed empty

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "run-report.png"
    shot.unlink(missing_ok=True)
    _run_chromium(["--window-size=1200,4200", f"--screenshot={shot}", path.as_uri()], tmp_path / "chrome2")
    assert shot.exists() and shot.stat().st_size > 20_000
