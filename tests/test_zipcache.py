"""medcorpus.core.zipcache: import caches of unchanged zip archives survive importlib.invalidate_caches()."""

from __future__ import annotations

import importlib
import sys
import zipfile
import zipimport

import pytest

from medcorpus.core import zipcache

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="CPython 3.12+ re-reads zip directories lazily itself (gh-103200)"
)


def _write(archive, modules: dict[str, str]) -> None:
    with zipfile.ZipFile(archive, "w") as z:
        for name, source in modules.items():
            z.writestr(f"{name}.py", source)


def test_unchanged_archive_is_read_once_and_a_rewritten_one_again(tmp_path, monkeypatch):
    zipcache.install()  # already installed by importing medcorpus; a second call changes nothing
    assert zipcache.install() is False
    archive = tmp_path / "pkgs.zip"
    _write(archive, {"zc_first": "X = 1\n"})
    monkeypatch.syspath_prepend(str(archive))
    importlib.invalidate_caches()
    assert importlib.import_module("zc_first").X == 1

    reads: list[str] = []
    real = zipimport._read_directory
    monkeypatch.setattr(zipimport, "_read_directory", lambda path: reads.append(path) or real(path))
    for _ in range(5):  # what Spark's Python worker does before every task
        importlib.invalidate_caches()
    assert reads.count(str(archive)) <= 1  # at most the first sight of this archive; never once per call

    _write(archive, {"zc_first": "X = 1\n", "zc_second": "Y = 2\n"})  # rewritten: bigger, newer
    importlib.invalidate_caches()
    assert importlib.import_module("zc_second").Y == 2
    sys.modules.pop("zc_first", None)
    sys.modules.pop("zc_second", None)
