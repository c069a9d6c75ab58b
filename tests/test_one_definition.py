"""Shared logic has one home (issue 19): the source of lib/ defines each of these in one module only."""

from __future__ import annotations

import ast
import re
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib" / "medcorpus"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(LIB)): p.read_text(encoding="utf-8") for p in sorted(LIB.rglob("*.py"))}


def _where(pattern: str) -> list[str]:
    rx = re.compile(pattern, re.MULTILINE)
    return [name for name, text in _sources().items() if rx.search(text)]


def test_document_tables_are_defined_once():
    assert _where(r"^DOCUMENT_TABLES\b.*=") == ["core/warehouse.py"]


def test_han_ranges_live_in_text_script():
    # a CJK ideograph range written out (\u4e00, 一-, \u3400 ...) anywhere else is a second definition
    assert _where(r"\\u4e00|\\u3400|\\u9fff|\\u9fa5|一-|㐀-|\\p\{IsHan\}|\\x\{4E00\}") == []
    from medcorpus.text import script

    assert script.HAN.pattern == "[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


def test_no_module_imports_another_ones_private_names():
    offenders = []
    for name, text in _sources().items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medcorpus"):
                offenders += [f"{name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert offenders == [], offenders


def test_pii_patterns_are_defined_once():
    assert _where(r"^PII_PATTERNS\b.*= \{") == ["text/pii.py"]
