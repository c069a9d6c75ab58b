"""bench/measure_datasets.py's corpus builder: books become one document per section (no Spark)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import measure_datasets as md  # noqa: E402

from tests.conftest import shared_data_path  # noqa: E402

BOOK = (
    "<篇名>本草备要\r\n书名：本草备要\r\n作者：汪昂  \r\n\r\n\r\n<目录>\r\n\r\n"
    "<篇名>陈序\r\n\r\n内容：医学始于《内经》，药品始于《本经》， \r\n故也同雷。\r\n\r\n"
    "<目录>草部\r\n\r\n<篇名>芦根\r\n\r\n内容：泻热，止呕\r\n甘益胃，寒降火。\r\n\r\n"
    "<目录>草部\r\n\r\n<篇名>空篇\r\n\r\n\r\n"
    "<目录>草部\r\n\r\n<篇名>苎根\r\n内容：泻热，散瘀\r\n"
)


def test_tcm_sections_one_per_titled_section_without_markers() -> None:
    sections = md.tcm_sections(BOOK)
    # the header block (书名/作者) and the empty section are left out
    assert [t for t, _ in sections] == ["陈序", "芦根", "苎根"]
    assert sections[1][1] == "芦根\n泻热，止呕\n甘益胃，寒降火。"
    assert sections[0][1] == "陈序\n医学始于《内经》，药品始于《本经》，\n故也同雷。"
    for _, text in sections:
        assert "<篇名>" not in text and "<目录>" not in text and "内容：" not in text and "\r" not in text


def test_textbook_sections_split_at_numbered_sections() -> None:
    text = ("第一章论\n传染病是指……\n第一节感染与免疫—、感染的概念\n感染是……\n"
            "第一章总论\n（二）隐性感染\n第二节发病机制\n发生与发展……\n")
    sections = md.textbook_sections(text)
    assert [h for h, _ in sections] == ["", "第一节感染与免疫—、感染的概念", "第二节发病机制"]
    assert sections[0][1] == "第一章论\n传染病是指……"
    assert sections[1][1].endswith("第一章总论\n（二）隐性感染")  # running page headers stay in the body


def test_write_sections_jsonl_with_ids_and_titles(tmp_path: Path) -> None:
    out = tmp_path / "book.jsonl"
    md.write_sections(out, "book", [("", "前言"), ("芦根", "芦根\n泻热")])
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows == [{"id": "book#0", "title": "book", "text": "前言"},
                    {"id": "book#1", "title": "芦根", "text": "芦根\n泻热"}]


@pytest.mark.shared_data
def test_real_tcm_book_splits_into_its_sections() -> None:
    book = shared_data_path("medical_zh", "tcm_books", "018-本草备要.txt").read_bytes().decode("gb18030")
    sections = md.tcm_sections(book)
    markers = book.count("<篇名>")
    assert markers - 5 <= len(sections) < markers  # the header block and a few empty sections go
    assert sum(len(t) for _, t in sections) > 0.9 * len(book.replace("\r\n", "\n")) - 20 * markers
    assert all(text.strip() and "<篇名>" not in text for _, text in sections)
