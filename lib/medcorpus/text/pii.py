"""The one PII redaction policy: which patterns count as PII, how a candidate is validated, what replaces it.

Every table that leaves ingest goes through it — ``documents`` (text, title, url, meta), the filter's
``clean_documents`` / ``filtered_out``, ``sft`` messages and fields, ``preference`` pairs, quarantine
``raw`` payloads — and so does every LLM prompt before it is sent. Two engines apply the same patterns:

* Spark built-in expressions (:func:`redact_column`, :func:`redact_pii`, :func:`redact_messages`) for
  tables, and
* plain Python ``re`` (:func:`redact_text`, :func:`redact_value`) inside the ingest readers and the LLM
  client, where the data is already in Python.

The patterns are written in the common subset of Java and Python regular expressions (no ``\\p{..}``, no
named groups; ``\\w``/``\\s`` are ASCII in both because Python compiles them with ``re.ASCII``), and
``tests/test_redact.py`` checks that both engines give the same output. Digits may be ASCII or
full-width (０-９); ID and bank card candidates are normalised to ASCII digits before their checksum.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

FULL_WIDTH_DIGITS = "０１２３４５６７８９"
ASCII_DIGITS = "0123456789"
_FW_TABLE = str.maketrans(FULL_WIDTH_DIGITS + "Ｘｘ", ASCII_DIGITS + "XX")

_D = "[0-9０-９]"  # one digit, ASCII or full-width
_NB = r"(?<![0-9A-Za-z０-９])"  # not preceded by a digit or letter
_NA = r"(?![0-9A-Za-z０-９])"  # not followed by one


def _d(n: str) -> str:
    return _D + "{" + n + "}"


PII_PATTERNS: dict[str, str] = {
    # user:password in a URL; only the credentials are replaced
    "URL_CREDENTIALS": r"(?<=://)[^\s/:@]+:[^\s/@]+(?=@)",
    "EMAIL": r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])",
    # resident ID: 18 digits (the last may be X) printed whole, 6-8-4 or 6-4-4-4; or the old 15-digit
    # number, whole or 6-6-3. Candidates are validated below: area code, birth date and (18) check digit.
    "ID_CARD": _NB + "(?:" + _d("6") + "[ -]?" + _d("4") + "[ -]?" + _d("4") + "[ -]?" + _d("3") + "[0-9０-９XxＸｘ]"
    + "|" + _d("6") + "[ -]?" + _d("6") + "[ -]?" + _d("3") + ")" + _NA,
    # 16-19 digits: whole, or in groups of four with a 1-3 digit tail (4-4-4-4-3); validated by Luhn
    "BANK_CARD": _NB + _d("4") + "(?:[ -]?" + _d("4") + "){2}[ -]?" + _d("4") + "(?:[ -]?" + _d("1,3") + ")?" + _NA,
    # IPv4 with valid octets; plain section numbers like 1.2.3.4 (all one-digit octets) are left alone
    "IP": r"(?<![0-9.])(?![0-9]\.[0-9]\.[0-9]\.[0-9](?![0-9]))"
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?![0-9.])",
    # mainland mobile: optional +86, 1[3-9]x then 4-4 (138 0013 8005, 138.0013.8005) or 1[3-9]xx 3-4
    # (1380 013 8007); separators space, dot or hyphen
    "PHONE": "(?<![0-9０-９])(?:(?:\\+|00)86[ -]?)?[1１][3-9３-９](?:" + _D + "(?:[ .-]?" + _d("4") + "){2}"
    + "|" + _d("2") + "[ .-]?" + _d("3") + "[ .-]?" + _d("4") + ")(?![0-9０-９])",
    # landline: area code 0xx(x) in brackets or followed by a hyphen or space, then a 7-8 digit local
    # number, whole or split 3-4 / 4-4 (0755 83881234, 021-6888-1234, (0755)23456789)
    "LANDLINE": "(?<![0-9０-９.])(?:[(（][0０]" + _d("2,3") + "[)）] ?|[0０]" + _d("2,3") + "[ -])[2-8２-８]"
    + _d("2,3") + "[ -]?" + _d("4") + "(?:-" + _d("1,4") + ")?(?![0-9０-９])",
    # North American style: (555) 123-4567, 555-123-4567, +1 555 123 4567, 1-800-422-6237
    "PHONE_EN": r"(?<![0-9A-Za-z])(?:\+?1[ .-])?(?:\([2-9][0-9]{2}\) ?|[2-9][0-9]{2}[ .-])[2-9][0-9]{2}[ .-][0-9]{4}(?![0-9])",
}
PLACEHOLDER = {"PHONE_EN": "<PHONE>"}
# What a match of each type cannot do without: a cheap necessary condition, tested before the patterns
# themselves. Every digit-based type is a run of at least 7 characters of digits and the separators its pattern
# allows, starting with a digit (the shortest IPv4 address the IP pattern accepts, "1.1.1.10", is 8; phone,
# landline, ID and card numbers are longer), so a text without such a run cannot hold one of them. On real text
# the run is rare (2.6% of the documents of the scale bench), and a character-class scan is ~15x faster than the
# alternation of every pattern's lookarounds at every position (tests/test_redact.py checks every match).
DIGIT_RUN = "[0-9０-９][0-9０-９ .()（）+\\-]{6}"
PII_NEEDS: dict[str, str] = {"URL_CREDENTIALS": "://", "EMAIL": "@"}  # every other type: DIGIT_RUN


def needs_of(pii_type: str) -> str:
    """The necessary-condition regex of one type (see :data:`PII_NEEDS`)."""
    return PII_NEEDS.get(pii_type, DIGIT_RUN)
DEFAULT_TYPES: tuple[str, ...] = (
    "URL_CREDENTIALS", "EMAIL", "ID_CARD", "BANK_CARD", "IP", "PHONE", "LANDLINE", "PHONE_EN",
)
DEFAULT_BANK_CARD_PREFIXES = "3456"

#: The types whose leftovers the data-quality suites (medcorpus.quality.expectations) look for in released
#: text, as a regex over the column. ID and bank cards are not among them: without the checksum a bare
#: match is not proof of PII.
LEFTOVER_CHECK_TYPES: tuple[str, ...] = ("URL_CREDENTIALS", "EMAIL", "PHONE")


def patterns(types: Iterable[str]) -> dict[str, str]:
    """The regexes of ``types`` (in that order), from :data:`PII_PATTERNS`."""
    return {t: PII_PATTERNS[t] for t in types}

# What a normalised (ASCII, no separators) ID candidate must look like besides its check digit.
ID18_SHAPE = r"^[1-9][0-9]{5}(18|19|20)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9X]$"
ID15_SHAPE = r"^[1-9][0-9]{5}[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])[0-9]{3}$"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def placeholder(pii_type: str) -> str:
    return PLACEHOLDER.get(pii_type, f"<{pii_type}>")


@dataclass(frozen=True)
class Policy:
    """Which PII types are redacted (in this order) and the bank card first digits that are plausible."""

    types: tuple[str, ...] = DEFAULT_TYPES
    bank_card_prefixes: str = DEFAULT_BANK_CARD_PREFIXES

    def __post_init__(self) -> None:
        unknown = [t for t in self.types if t not in PII_PATTERNS]
        if unknown:
            raise ValueError(f"unknown PII type {unknown[0]!r}; known: {', '.join(PII_PATTERNS)}")

    @classmethod
    def of(cls, cfg: Any) -> Policy:
        """From a :class:`~medcorpus.core.config.FilterConfig` (``pii_types``, ``bank_card_prefixes``), a whole
        :class:`~medcorpus.core.config.Config`, a Policy, or None (the defaults)."""
        if cfg is None:
            return cls()
        if isinstance(cfg, Policy):
            return cfg
        cfg = getattr(cfg, "filter", cfg)
        return cls(tuple(cfg.pii_types), str(cfg.bank_card_prefixes))


# ---------------------------------------------------------------------------------------------------
# Python engine
# ---------------------------------------------------------------------------------------------------
def _ascii_digits(candidate: str) -> str:
    return re.sub(r"[^0-9X]", "", candidate.translate(_FW_TABLE).upper())


def id_card_ok(candidate: str) -> bool:
    """18 digits: shape + GB 11643 check digit; 15 digits (pre-1999 numbers): shape."""
    digits = _ascii_digits(candidate)
    if len(digits) == 15:
        return re.match(ID15_SHAPE, digits) is not None
    if len(digits) != 18 or re.match(ID18_SHAPE, digits) is None:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return "10X98765432"[total % 11] == digits[17]


def luhn_ok(candidate: str, prefixes: str = DEFAULT_BANK_CARD_PREFIXES) -> bool:
    digits = _ascii_digits(candidate)
    if not digits.isdigit() or not 16 <= len(digits) <= 19 or digits[0] not in prefixes:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


_DIGIT_RUN = re.compile(DIGIT_RUN)


@cache
def _compiled(pii_type: str) -> re.Pattern[str]:
    return re.compile(PII_PATTERNS[pii_type], re.ASCII)


def _py_validator(pii_type: str, policy: Policy) -> Callable[[str], bool] | None:
    if pii_type == "ID_CARD":
        return id_card_ok
    if pii_type == "BANK_CARD":
        return lambda c: luhn_ok(c, policy.bank_card_prefixes)
    return None


def redact_text(text: str | None, policy: Policy | None = None) -> tuple[str | None, dict[str, int]]:
    """(redacted text, redactions per type) — the Python engine of the policy."""
    policy = policy or Policy()
    if not text:
        return text, {}
    counts: dict[str, int] = {}
    has_digit_run = _DIGIT_RUN.search(text) is not None
    for pii_type in policy.types:
        needs = PII_NEEDS.get(pii_type)
        if (needs is None and not has_digit_run) or (needs is not None and needs not in text):
            continue  # a cheap test first (PII_NEEDS): most text has no '@', no '://', no run of digits
        valid = _py_validator(pii_type, policy)
        n = 0

        def sub(m: re.Match[str], valid: Callable[[str], bool] | None = valid, ph: str = placeholder(pii_type)) -> str:
            nonlocal n
            if valid is not None and not valid(m.group(0)):
                return m.group(0)
            n += 1
            return ph

        text = _compiled(pii_type).sub(sub, text)
        if n:
            counts[pii_type] = n
    return text, counts


def redact(text: str | None, policy: Policy | None = None) -> str | None:
    """The redacted text only."""
    return redact_text(text, policy)[0]


def redact_value(value: Any, policy: Policy | None = None) -> Any:
    """Every string inside a JSON-like value (dict keys too), redacted; other values unchanged."""
    if isinstance(value, str):
        return redact(value, policy)
    if isinstance(value, Mapping):
        return {redact(str(k), policy) if isinstance(k, str) else k: redact_value(v, policy) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(v, policy) for v in value)
    return value


def redact_json_string(text: str | None, policy: Policy | None = None) -> str | None:
    """A JSON document's strings redacted, written back compactly; text that is not JSON redacted as text."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return redact(text, policy)
    if isinstance(value, str):
        return redact(text, policy)
    return json.dumps(redact_value(value, policy), ensure_ascii=False, sort_keys=True)


# ---------------------------------------------------------------------------------------------------
# Spark engine
# ---------------------------------------------------------------------------------------------------
def _spark_ascii(candidate: Column) -> Column:
    upper = F.upper(F.translate(candidate, FULL_WIDTH_DIGITS + "Ｘｘ", ASCII_DIGITS + "XX"))
    return F.regexp_replace(upper, r"[^0-9X]", "")


def id_card_valid(candidate: Column) -> Column:
    """Spark twin of :func:`id_card_ok`: shape, and for 18 digits the GB 11643 check digit."""
    digits = _spark_ascii(candidate)
    weights = F.array(*[F.lit(w) for w in _ID_WEIGHTS])
    total = F.aggregate(
        F.sequence(F.lit(1), F.lit(17)),
        F.lit(0),
        lambda acc, i: acc + F.coalesce(digits.substr(i, F.lit(1)).try_cast("int"), F.lit(0)) * F.element_at(weights, i),
    )
    check = F.element_at(F.array(*[F.lit(c) for c in "10X98765432"]), (total % 11) + 1)
    n = F.length(digits)
    return (
        F.when(n == 15, digits.rlike(ID15_SHAPE))
        .when((n == 18) & digits.rlike(ID18_SHAPE), digits.substr(F.lit(18), F.lit(1)) == check)
        .otherwise(F.lit(False))
    )


def luhn_valid(candidate: Column, prefixes: str = DEFAULT_BANK_CARD_PREFIXES) -> Column:
    """Spark twin of :func:`luhn_ok`: Luhn checksum over the digits and a plausible first digit."""
    digits = F.regexp_replace(F.translate(candidate, FULL_WIDTH_DIGITS, ASCII_DIGITS), r"[^0-9]", "")
    n = F.length(digits)

    def add(acc: Column, i: Column) -> Column:
        d = digits.substr(n - i + 1, F.lit(1)).cast("int")
        doubled = F.when(d * 2 > 9, d * 2 - 9).otherwise(d * 2)
        return acc + F.when(i % 2 == 0, doubled).otherwise(d)

    total = F.aggregate(F.sequence(F.lit(1), F.greatest(n, F.lit(1))), F.lit(0), add)
    return (n >= 16) & (n <= 19) & (total % 10 == 0) & digits.substr(F.lit(1), F.lit(1)).isin(*list(prefixes))


def _spark_validator(pii_type: str, policy: Policy) -> Callable[[Column], Column] | None:
    if pii_type == "ID_CARD":
        return id_card_valid
    if pii_type == "BANK_CARD":
        return lambda c: luhn_valid(c, policy.bank_card_prefixes)
    return None


def redact_one(text: Column, pii_type: str, policy: Policy) -> tuple[Column, Column]:
    """(redacted text, number of redactions) for one PII type."""
    pattern = PII_PATTERNS[pii_type]
    validator = _spark_validator(pii_type, policy)
    if validator is None:
        count = F.coalesce(F.regexp_count(text, F.lit(pattern)), F.lit(0))
        return F.regexp_replace(text, pattern, placeholder(pii_type)), count
    valid = F.filter(F.regexp_extract_all(text, F.lit(pattern), 0), validator)
    count = F.coalesce(F.size(valid), F.lit(0))
    # Only the candidates that passed validation are replaced: a pattern of exactly those strings
    # (digits, X, spaces and hyphens: nothing to escape) between the same non-digit boundaries.
    exact = F.concat(F.lit(_NB + "(?:"), F.array_join(F.array_distinct(valid), "|"), F.lit(")" + _NA))
    return F.when(count > 0, F.regexp_replace(text, exact, F.lit(placeholder(pii_type)))).otherwise(text), count


def any_pii_pattern(policy: Policy) -> str:
    """One regex matching wherever any of the policy's patterns matches (their alternation)."""
    return "|".join(f"(?:{PII_PATTERNS[t]})" for t in policy.types)


def any_need_pattern(policy: Policy) -> str:
    """One regex matching wherever a necessary condition of one of the policy's types holds (:data:`PII_NEEDS`)."""
    needs = dict.fromkeys(needs_of(t) for t in policy.types)
    return "|".join(f"(?:{n})" for n in needs)


def may_hold_pii(text: Column, policy: Policy) -> Column:
    """False when no PII pattern of the policy matches ``text`` anywhere: the redaction chain would return
    it unchanged (a type changes nothing where its pattern finds nothing, so the next type sees the same
    text). A character-class scan for what every type needs (an '@', a '://', a run of 7 digits and
    separators) first, then one pass of the alternation of all patterns on the few texts that pass it; the
    chain runs only on the documents that may hold PII. Null for a null text."""
    return text.rlike(any_need_pattern(policy)) & text.rlike(any_pii_pattern(policy))


def redact_column(text: Column, policy: Policy | None = None) -> Column:
    """``text`` with every PII type of the policy replaced (no counts): for any string column or field."""
    policy = policy or Policy()
    original = text
    for pii_type in policy.types:
        text, _ = redact_one(text, pii_type, policy)
    return F.when(may_hold_pii(original, policy), text).otherwise(original)


def redact_pii(df: DataFrame, cfg: Any = None, text_col: str = "text") -> DataFrame:
    """Replace PII in ``text_col`` by typed placeholders; add ``pii_counts`` map<string,int> (non-zero types).

    Types run in the policy's order, each on the output of the previous one, so an ID number is not
    counted again as a bank card and credentials are gone before the e-mail pattern runs.
    """
    policy = Policy.of(cfg)
    # documents no pattern matches skip the chain (see may_hold_pii): same text, no counts
    out = df.withColumn("_pii_any", F.coalesce(may_hold_pii(F.col(text_col), policy), F.lit(False)))
    suspect = F.col("_pii_any")
    count_cols = []
    for pii_type in policy.types:
        redacted, count = redact_one(F.col(text_col), pii_type, policy)
        cname = f"_pii_{pii_type}"
        # count first (reads the text before this type's replacement), then replace
        out = (out.withColumn(cname, F.when(suspect, count).otherwise(F.lit(0)))
               .withColumn(text_col, F.when(suspect, redacted).otherwise(F.col(text_col))))
        count_cols.append((pii_type, cname))
    pairs = [x for pii_type, cname in count_cols for x in (F.lit(pii_type), F.col(cname).cast("int"))]
    counts = F.map_filter(F.create_map(*pairs), lambda k, v: v > 0)
    return out.withColumn("pii_counts", counts).drop("_pii_any", *[c for _, c in count_cols])


def redact_columns(df: DataFrame, columns: Iterable[str], cfg: Any = None) -> DataFrame:
    """``df`` with each named string column redacted (columns it lacks are skipped)."""
    policy = Policy.of(cfg)
    present = set(df.columns)
    for name in columns:
        if name in present:
            df = df.withColumn(name, redact_column(F.col(name), policy))
    return df


def redact_messages(messages: Column, cfg: Any = None, field: str = "content") -> Column:
    """An array of structs (chat messages, options, responses) with ``field`` of every element redacted."""
    policy = Policy.of(cfg)
    # coalesce keeps a non-nullable field non-nullable (the redacted value is null only when the input is)
    return F.transform(messages, lambda m: m.withField(field, F.coalesce(redact_column(m[field], policy), m[field])))


def redact_struct_arrays(df: DataFrame, arrays: Mapping[str, Sequence[str]], cfg: Any = None) -> DataFrame:
    """``df`` with the named string fields of each named array-of-struct column redacted."""
    policy = Policy.of(cfg)
    present = set(df.columns)
    for name, fields in arrays.items():
        if name not in present:
            continue
        col = F.col(name)
        for field in fields:
            col = redact_messages(col, policy, field)
        df = df.withColumn(name, col)
    return df
