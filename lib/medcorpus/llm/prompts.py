"""Versioned prompt templates (``prompts/<name>.<version>.yaml``) and the validators of their replies.

A template is plain data: name, version, reply ``format`` (json | text), a system and a user message with
``${var}`` placeholders (``string.Template``, so JSON braces in the text need no escaping). Changing a
prompt means adding ``<name>.v2.yaml`` and pointing the config at it: the version is part of the cache key,
so old answers are never served for a new prompt.

Each template name has a validator that turns the raw reply into a normalised JSON string, or raises
:class:`ReplyError` — the caller asks once more (malformed JSON), then records a failure with the raw text.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from medcorpus.core.config import REPO_ROOT
from medcorpus.core.errors import ConfigError

JUDGE_ASPECTS = ("fluency", "relevance", "completeness", "proficiency")


class ReplyError(ValueError):
    """The model replied, but not in the required shape."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: str
    format: str  # json | text
    system: str
    user: str
    sha: str

    @property
    def ref(self) -> str:
        return f"{self.name}.{self.version}"

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, str]]:
        values = {k: "" if v is None else str(v) for k, v in variables.items()}
        try:
            user = string.Template(self.user).substitute(values)
        except KeyError as err:
            raise ConfigError(f"template {self.ref} needs variable {err.args[0]!r}") from None
        return [{"role": "system", "content": self.system.strip()}, {"role": "user", "content": user.strip()}]

    def placeholders(self) -> set[str]:
        return {m.group("named") or m.group("braced") for m in string.Template.pattern.finditer(self.user)} - {None}


def prompt_dir(configured: str) -> Path:
    path = Path(configured)
    return path if path.is_absolute() else REPO_ROOT / path


def load_template(ref: str, directory: str | Path) -> PromptTemplate:
    """``annotate.v1`` -> the parsed ``prompts/annotate.v1.yaml``; unknown refs list the available ones."""
    folder = Path(directory)
    path = folder / f"{ref}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.name.removesuffix(".yaml") for p in folder.glob("*.yaml"))) or "none"
        raise ConfigError(f"prompt template {ref!r} not found in {folder} (available: {known})")
    text = path.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    name, version = data.get("name"), str(data.get("version", ""))
    if f"{name}.{version}" != ref:
        raise ConfigError(f"{path.name} declares name/version {name}.{version}; the file name says {ref}")
    if data.get("format") not in ("json", "text"):
        raise ConfigError(f"{path.name}: format must be json or text")
    if name not in VALIDATORS:
        raise ConfigError(f"{path.name}: no reply validator for template {name!r} (known: {', '.join(VALIDATORS)})")
    return PromptTemplate(
        name=name,
        version=version,
        format=data["format"],
        system=data.get("system", ""),
        user=data["user"],
        sha=hashlib.sha256(text.encode("utf-8")).hexdigest()[:16],
    )


# ---------------------------------------------------------------------------------------------------
# reply parsing
# ---------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)


def extract_json(content: str) -> Any:
    """The JSON object in a reply: the whole text, a fenced block, or the outermost {...} span."""
    candidates = [content.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(content)]
    start, end = content.find("{"), content.rfind("}")
    if 0 <= start < end:
        candidates.append(content[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ReplyError("reply is not valid JSON")


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def _score(value: Any, what: str, low: float = 0, high: float = 5) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ReplyError(f"{what} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ReplyError(f"{what} is not a number") from None
    if not low <= number <= high:
        raise ReplyError(f"{what}={number} outside [{low}, {high}]")
    return number


def validate_annotate(content: str, options: Mapping[str, Any]) -> str:
    obj = extract_json(content)
    if not isinstance(obj, dict):
        raise ReplyError("reply is not a JSON object")
    domain = str(obj.get("domain", "")).strip().lower()
    labels = tuple(options.get("domain_labels", ()))
    if domain not in labels:
        raise ReplyError(f"domain {domain!r} not one of {', '.join(labels)}")
    quality = _score(obj.get("quality"), "quality")
    if quality != int(quality):
        raise ReplyError("quality is not an integer")
    return _dump({"domain": domain, "quality": int(quality)})


def validate_translate(content: str, options: Mapping[str, Any]) -> str:
    text = content.strip()
    for prefix in ("译文：", "译文:", "现代汉语：", "现代汉语:"):
        text = text.removeprefix(prefix).strip()
    if not text:
        raise ReplyError("empty translation")
    return _dump({"translation": text})


def validate_generate_qa(content: str, options: Mapping[str, Any]) -> str:
    obj = extract_json(content)
    items = obj.get("qa") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise ReplyError("no 'qa' list")
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            continue
        q, a = str(item.get("question") or "").strip(), str(item.get("answer") or "").strip()
        if q and a:
            pairs.append({"question": q, "answer": a})
    if not pairs:
        raise ReplyError("no complete question/answer pair")
    return _dump({"qa": pairs[: int(options.get("pairs", len(pairs)))]})


def validate_doctor_answer(content: str, options: Mapping[str, Any]) -> str:
    text = content.strip()
    if not text:
        raise ReplyError("empty answer")
    return _dump({"answer": text})


def validate_judge(content: str, options: Mapping[str, Any]) -> str:
    obj = extract_json(content)
    if not isinstance(obj, dict):
        raise ReplyError("reply is not a JSON object")
    out: dict[str, dict[str, float]] = {}
    for side in ("a", "b"):
        scores = obj.get(side)
        if not isinstance(scores, dict):
            raise ReplyError(f"no scores for response {side}")
        out[side] = {k: _score(scores.get(k), f"{side}.{k}") for k in JUDGE_ASPECTS}
    return _dump(out)


VALIDATORS: dict[str, Callable[[str, Mapping[str, Any]], str]] = {
    "annotate": validate_annotate,
    "translate": validate_translate,
    "generate_qa": validate_generate_qa,
    "doctor_answer": validate_doctor_answer,
    "judge": validate_judge,
}

REPAIR_MESSAGE = (
    "上一条回复不符合要求（{error}）。请严格按照要求的格式重新回答，只输出 JSON。"
    " / Your previous reply was invalid ({error}); answer again with the required JSON only."
)


def validate(template: PromptTemplate, content: str, options: Mapping[str, Any]) -> str:
    return VALIDATORS[template.name](content, options)
