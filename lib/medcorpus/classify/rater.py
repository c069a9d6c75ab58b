"""The quality rater (DataRater 0-5): intrinsic quality signals, a fluency model, a pairwise-trained scale.

What 0-5 means (after CareBot's DataRater rubric, ``../shared/papers``): **5** fluent, coherent, complete
text with no noise; **4** good text with minor flaws; **3** usable but noticeably flawed (some repetition,
an ad line, rough language); **2** heavily flawed (spam, broken order, lots of noise) but with some
content; **1** mostly noise, boilerplate or garbled text; **0** no usable content. The pretraining mixtures'
default floor of 2.5 keeps 3-5 and drops 0-2.

Why not a regression on topic words: a rater fitted on hashed n-grams with labels that follow the source
learns the source (length, language, register) instead of quality. This rater only sees **signals of
quality that do not depend on topic**:

* ``fluency`` / ``fluency_tail``: mean and worst-window log10 probability per character under a character
  n-gram model of edited reference text (:mod:`medcorpus.classify.fluency`), standardised per script (Han vs
  other) against the reference documents, so Chinese and English text of the same quality score alike;
* ``cohesion`` / ``coherence``: how much more adjacent sentences share words than distant ones, and than
  every pair further apart (a permutation baseline; lost order drops both); ``lead``: whether the first
  sentence (a title, the question) shares more with the rest than the others; ``title_lead``: a short first
  line over a longer body; ``question_position``: where the questions stand (a question precedes its
  answer, a title question comes first); ``order_breaks``: list numbers or ordinals out of order, or a text
  opening with a back-referring connective; ``bracket_breaks``: brackets and quotes closed before they open
  or never closed (a quote split across reordered sentences, a text cut inside brackets). The order signals
  are undefined for a text of fewer than 4 sentences (or 3 lines, or with no question): the rater then uses
  the pair originals' mean per script, so a short text is not marked down for being short;
* ``dangling_labels``: speaker or heading lines ("医生:", "Patient:") with no turn under them;
  ``formula_position``: greetings and "首先" away from the start, sign-offs and "总之" away from the end;
  ``anaphoric_start``: a text opening with a word that refers back (They, This; 他, 这, 该) (qrater-v3);
* ``end_typical``: whether the last line ends the way the text's other lines end (a list of questions ends
  with a question, a cut does not; qrater-v3);
* ``ends_cleanly`` / ``end_prob`` / ``word_complete``: the text ends with sentence-final punctuation, the
  fluency model's probability that a text ends after its last characters, and (Latin script, centred on
  the script's mean so it adds nothing between scripts) that a word ends there (a document cut mid-sentence
  or mid-word does none of these);
* ``spam``, ``boilerplate``, ``noise``, ``repetition``, ``stuffing``: densities of ad/SEO cues, navigation
  lines, OCR noise and mojibake, repeated lines and long n-grams (one passage restated before new text, a
  question repeated as the title of its answer, is not counted), and the share of the most repeated word.

The weights come from pairs (an original document and its degraded twin, :mod:`medcorpus.classify.degrade`):
a logistic regression on feature differences learns which direction each signal should push, and a linear
map puts the originals' median at 3.75 and the twins' median at 1.25 (bent smoothly into 0..5 at the ends,
:func:`soft_clip`). ``train-rater`` on annotated scores
(LLM or human) refits the weights on the same features by least squares.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medcorpus.classify.fluency import CharLM
from medcorpus.text.script import NOT_HAN_RUN as _NOT_HAN
from medcorpus.text.script import mostly_han

RATER_FEATURES = ("fluency", "fluency_tail", "cohesion", "lead", "order_breaks", "ends_cleanly", "end_prob",
                  "spam", "boilerplate", "noise", "repetition", "repetition3", "stuffing", "coherence", "title_lead",
                  "bracket_breaks", "word_complete", "question_position", "end_typical", "dangling_labels",
                  "anaphoric_start", "formula_position", "log_length")
# A fixed, small weight on log10(characters) breaks ties for a document cut short (a cut that happens to end
# cleanly looks like its original on every other signal). 0.08 per tenfold length: a 3,000-character text
# gains 0.12 over a 100-character one, too little to order a source by length.
LENGTH_TIEBREAK = 0.08
SHRINK_SENTENCES = 3.0  # see ScriptStats: sentence-overlap signals of short texts are shrunk to the mean
_SHRUNK = tuple(RATER_FEATURES.index(n) for n in ("cohesion", "lead", "coherence"))
# a signal that only one script has (whether the last Latin word is complete) is centred on its script's mean, so
# it orders texts within the script without adding a constant between Chinese and English texts
_CENTRED = (RATER_FEATURES.index("word_complete"),)
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")
_SENT = re.compile(r"(?<=[。！？!?；;…])|(?<=[.])(?=\s)|\n")
_END_OK = re.compile(r"[。！？!?…\.\"'”’」』）)\]】》>~～]\s*$")
_SPAM = re.compile(
    r"加微信|加我微信|加v|加V|微信号|扫码|二维码|公众号|优惠券|领券|包邮|抢购|秒杀|特价|下单|立减|代理|招募|娱乐城|注册即送|"
    r"日赚|月入|免费领取|点击|私聊|咨询热线|正品|退换|热销|click here|buy now|order now|free shipping|subscribe|"
    r"sign up|limited offer|best price|discount|coupon|promo|cheap|no prescription|earn \$|work from home|"
    r"follow us|deals?\b|https?://|www\.|\.com\b|\.cn\b|\.biz\b|\${2,}|!{3,}|！{2,}",
    re.IGNORECASE,
)
_NAV = re.compile(r"首页|关于我们|联系我们|网站地图|隐私政策|免责声明|版权所有|上一篇|下一篇|返回顶部|分享到|热门标签|"
                  r"\bhome\b|about us|contact|privacy policy|terms of use|cookie|sitemap|share on|previous post|"
                  r"next post|back to top|related articles|all rights reserved|[|¦»›]", re.IGNORECASE)
# a navigation line is short (menus, footers, share bars): a cue inside a long sentence ("at home") is prose
_NAV_LINE = re.compile(r"(?m)^(?=[^\n]{0,80}$)[^\n]*?(?:" + _NAV.pattern + r")[^\n]*$", re.IGNORECASE)
_LINE = re.compile(r"(?m)^[^\n]*\S[^\n]*$")
_NOISE = re.compile(r"[~^`|¦¬°•■□▲◆※¤§¨\ufffd]|Ã|Â|â€|锟|鈥|銆|锛|涓|鐨|鏄|�")
_SPACE = re.compile(r"\s")
MAX_CHARS = 3000
MAX_SENTENCES = 30


def ends_complete(text: str) -> bool:
    """The text ends with sentence-final punctuation (or a closing quote or bracket after it)."""
    return bool(_END_OK.search((text or "")[-200:]))


def _units(sentence: str, han: bool) -> set[str]:
    if han:
        chars = _NOT_HAN.sub("", sentence)
        return {chars[i: i + 2] for i in range(len(chars) - 1)}
    return {w for w in _WORD.findall(sentence.lower()) if len(w) > 3}


def sentence_units(text: str, han: bool) -> list[set[str]]:
    """Word sets of the first MAX_SENTENCES sentences (Han bigrams / English words of 4+ letters)."""
    sents = [s for s in _SENT.split(text) if s and len(s.strip()) > 3][:MAX_SENTENCES]
    return [u for u in (_units(s, han) for s in sents) if u]


def _overlap(a: set[str], b: set[str]) -> float:
    return len(a & b) / min(len(a), len(b))


def cohesion(units: list[set[str]]) -> float:
    """Mean overlap of adjacent sentences minus that of sentences 3, 5 and 8 apart (undefined, NaN, with < 4
    sentences: the rater then uses the reference value, so a short text is not marked down for being short)."""
    if len(units) < 4:
        return float("nan")
    near = [_overlap(units[i], units[i + 1]) for i in range(len(units) - 1)]
    far = [_overlap(units[i], units[i + k]) for k in (3, 5, 8) for i in range(len(units) - k)]
    return float(np.mean(near) - (np.mean(far) if far else 0.0))


def lead(units: list[set[str]]) -> float:
    """How much more the first sentence shares with the rest than an average sentence does (a title or a
    question that the text answers comes first; after shuffling, a random sentence does). NaN with < 4
    sentences."""
    if len(units) < 4:
        return float("nan")
    every: Counter[str] = Counter(x for u in units for x in u)
    shares = [sum(1 for x in u if every[x] > 1) / len(u) for u in units]
    return float(shares[0] - np.mean(shares))


_LIST_MARK = re.compile(
    r"(?:^|(?<=[\s。；;：:！!？?]))(?:(\d{1,2})[\.、\)）](?!\d)|[（(](\d{1,2})[）)])"
    r"|(首先|其次|再次|然后|最后)|\b(First|Second|Third|Finally|Lastly)\b", re.MULTILINE)
_ORDINAL = {"首先": 1, "其次": 2, "再次": 3, "然后": 3, "最后": 9, "First": 1, "Second": 2, "Third": 3,
            "Finally": 9, "Lastly": 9}
_OPENER = re.compile(r"^\s*(?:因此|所以|但是|然而|此外|另外|而且|并且|其次|最后|总之|因而|于是|同时|"
                     r"However|Therefore|Thus|Also|Moreover|Furthermore|In addition|Finally|Secondly|Lastly|Hence|"
                     r"Besides)\b")


def order_breaks(text: str) -> float:
    """Signs of lost order: list numbers that go backwards (other than a new list starting at 1) or skip
    ahead, ordinals out of order (最后 before 其次, Finally before Second), and a text that opens with a
    connective that refers back (因此, However)."""
    marks = []
    for m in _LIST_MARK.finditer(text[:MAX_CHARS]):
        num, paren, zh, en = m.groups()
        marks.append(int(num or paren) if (num or paren) else _ORDINAL[zh or en])
    breaks = 0
    for a, b in zip(marks, marks[1:]):
        if b == a + 1 or b == 1 or (b == 9 and a < 9) or (a == 9 and b == 1):
            continue
        breaks += 1
    score = breaks / max(len(marks) - 1, 1) if len(marks) >= 2 else 0.0
    return float(min(1.0, score + (0.5 if _OPENER.match(text) else 0.0)))


def coherence(units: list[set[str]]) -> float:
    """Mean overlap of adjacent sentences minus the mean overlap of every pair further apart (a permutation
    baseline: after shuffling, adjacent sentences share no more than any two do). NaN with < 4 sentences."""
    n = len(units)
    if n < 4:
        return float("nan")
    near = [_overlap(units[i], units[i + 1]) for i in range(n - 1)]
    far = [_overlap(units[i], units[j]) for i in range(n) for j in range(i + 2, n)]
    return float(np.mean(near) - np.mean(far))


def title_lead(text: str) -> float:
    """A short first line (a title, a heading, a question) over a longer body: 1 - len(first line) / median
    line length, clipped to 0..1 (NaN for a text of fewer than 3 lines). Lost order puts a body sentence first."""
    lines = [ln.strip() for ln in text[:MAX_CHARS].split("\n") if ln.strip()]
    if len(lines) < 3:
        return float("nan")
    med = float(np.median([len(ln) for ln in lines[1:]]))
    return float(np.clip(1.0 - len(lines[0]) / max(med, 1.0), 0.0, 1.0))


_OPENERS = "（(“「《【["
_CLOSERS = "）)”」》】]"
_PAIR = {c: o for o, c in zip(_OPENERS, _CLOSERS)}
_BRACKET = re.compile("[" + re.escape(_OPENERS + _CLOSERS) + "]")


def bracket_breaks(text: str) -> float:
    """Paired punctuation out of order: closers with no opener before them and openers never closed, per
    pair (a bracket or quote split across sentences that were reordered, or a text cut inside one)."""
    stack: list[str] = []
    errors = 0
    n = 0
    for m in _BRACKET.finditer(text[:MAX_CHARS]):
        c = m.group(0)
        n += 1
        if c in _OPENERS:
            stack.append(c)
        elif stack and stack[-1] == _PAIR[c]:
            stack.pop()
        elif _PAIR[c] in stack:
            while stack and stack[-1] != _PAIR[c]:
                stack.pop()
                errors += 1
            stack.pop()
        else:
            errors += 1
    errors += len(stack)
    return float(min(1.0, 2.0 * errors / max(n, 2)))


_QUESTION_END = re.compile(r"[?？]\s*$")


def question_position(text: str) -> float:
    """Mean relative position (0 = first sentence, 1 = last) of the sentences that ask a question, among the
    first MAX_SENTENCES: a question precedes its answer, a title question comes first. NaN with no question
    or fewer than 4 sentences."""
    sents = [s for s in _SENT.split(text[:MAX_CHARS]) if s and len(s.strip()) > 3][:MAX_SENTENCES]
    if len(sents) < 4:
        return float("nan")
    pos = [i / (len(sents) - 1) for i, s in enumerate(sents) if _QUESTION_END.search(s)]
    return float(np.mean(pos)) if pos else float("nan")


_LABEL_LINE = re.compile(r"^[^\n。！？!?.]{1,16}[:：]$")
MAX_LINES = 200


def dangling_labels(text: str) -> float:
    """Share of label lines (a speaker "医生:" / "Patient:", a heading "Answer:") with nothing under them: the
    next line is another label, or the text ends. In a dialogue each label introduces a turn; sentences put
    in another order leave labels side by side or last. NaN for a text with no label line."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()][:MAX_LINES]
    labels = [i for i, ln in enumerate(lines) if _LABEL_LINE.match(ln)]
    if not labels:
        return float("nan")
    bare = sum(1 for i in labels if i == len(lines) - 1 or _LABEL_LINE.match(lines[i + 1]))
    return bare / len(labels)


_ANAPHORIC = re.compile(r"^\s*(?:(?:He|She|It|They|This|These|Those|Such|Its|Their|His|Her)\b|他们|她们|它们|他|她|它|这|该)")


def anaphoric_start(text: str) -> float:
    """1 when the text opens with a word that refers back (He, They, This; 他, 这, 该): a first sentence
    rarely does; a sentence moved to the front often does."""
    return 1.0 if _ANAPHORIC.match(text) else 0.0


_OPENING = re.compile(r"^\W*(?:你好|您好|感谢您的信任|谢谢您的提问|根据您的描述|首先|Hi\b|Hello|Dear\b|Welcome|"
                      r"Thanks? (?:you )?for (?:your |the )?(?:query|question|asking|writing)|Good (?:morning|afternoon|evening)|"
                      r"First(?:ly)?\b)", re.IGNORECASE)
_CLOSING = re.compile(r"^\W*(?:总之|综上|总结|最后|祝您|祝你|希望对您有|希望能帮|谢谢|不客气|不谢|早日康复|"
                      r"In conclusion|In summary|To sum up|Overall\b|Finally\b|Hope (?:this|it|that) helps|Take care|"
                      r"Wish you|Regards|Thank you|Thanks\b|Good luck|Get well)", re.IGNORECASE)


def formula_position(text: str) -> float:
    """How far from their place the opening and closing formulas stand: a greeting or "首先" belongs at the
    start, "总之", "Hope this helps" or a thank-you at the end. The mean of the relative position (0 = first
    sentence, 1 = last) of opening sentences and of 1 - position of closing ones, among the first
    MAX_SENTENCES; about 0 in a text in order, about 0.5 once its sentences are shuffled. NaN with fewer than 4
    sentences or no formula."""
    sents = [s.strip() for s in _SENT.split(text[:MAX_CHARS]) if s and len(s.strip()) > 1][:MAX_SENTENCES]
    if len(sents) < 4:
        return float("nan")
    last = len(sents) - 1
    misplaced = [i / last for i, s in enumerate(sents) if _OPENING.match(s)]
    misplaced += [1.0 - i / last for i, s in enumerate(sents) if _CLOSING.match(s)]
    return float(np.mean(misplaced)) if misplaced else float("nan")


def line_end_typicality(texts: Sequence[str], lm: CharLM) -> np.ndarray:
    """How much the text's last line ends like its other lines do: log10 P(line break | the last line's
    final characters) minus the median of the same over the other lines (up to MAX_LINES). A list of
    questions ends with a question, a dialogue with a turn; a text cut mid-sentence ends in a way none of
    its lines does. NaN for a text of fewer than 3 lines (the rater then uses the script's mean)."""
    tails: list[str] = []
    spans: list[tuple[int, int, int]] = []
    for i, t in enumerate(texts):
        lines = [ln for ln in (t or "").split("\n") if ln.strip()]
        if len(lines) < 3:
            continue
        body = lines[:-1][:MAX_LINES]
        spans.append((i, len(tails), len(body)))
        tails.extend(body)
        tails.append(lines[-1])
    out = np.full(len(texts), np.nan)
    if not tails:
        return out
    lp = np.maximum(lm.newline_logprobs(tails), -6.0)
    for i, start, n in spans:
        out[i] = (lp[start + n] - float(np.median(lp[start: start + n]))) / 6.0
    return out


def _density(pattern: re.Pattern[str], text: str) -> float:
    return float(np.log1p(1000.0 * len(pattern.findall(text)) / max(len(text), 1)))


def restated_once(text: str) -> str:
    """``text`` without the second copy of a passage stated twice when the restatement is followed by new
    text at least as long as the passage (a question repeated as the title of its answer, a description
    quoted before the dialogue). Only one such passage is forgiven; a block pasted again at the end, or
    several repeated blocks, are left as they are."""
    lines = [ln.strip() for ln in text.split("\n")]
    counts = Counter(ln for ln in lines if len(ln) >= 8)
    twice = [ln for ln, c in counts.items() if c == 2]
    if len(twice) != 1 or any(c > 2 for c in counts.values()):
        return text
    passage = twice[0]
    second = [i for i, ln in enumerate(lines) if ln == passage][1]
    after = sum(len(ln) for ln in lines[second + 1:] if counts.get(ln, 0) < 2)
    if after < len(passage):
        return text
    return "\n".join(lines[:second] + lines[second + 1:])


def repetition(text: str, han: bool, tokens: str | list[str]) -> tuple[float, float]:
    """Shares of the text in repeated lines or long n-grams (12 Han chars / 5 words): seen twice, and seen
    three or more times (a question restated once is mild; a paragraph pasted three times is spam). One
    passage restated before new text (:func:`restated_once`) is not counted."""
    kept = restated_once(text)
    if kept is not text:
        text = kept
        tokens = _NOT_HAN.sub("", text) if han else _WORD.findall(text.lower())
    lines = [ln.strip() for ln in text.split("\n") if len(ln.strip()) >= 8]
    counts = Counter(lines)
    total = max(sum(len(ln) for ln in lines), 1)
    line2 = sum(len(ln) for ln in lines if counts[ln] > 1) / total
    line3 = sum(len(ln) for ln in lines if counts[ln] > 2) / total
    if han:
        grams = [tokens[i: i + 12] for i in range(0, max(len(tokens) - 11, 0))]
    else:
        grams = [" ".join(tokens[i: i + 5]) for i in range(0, max(len(tokens) - 4, 0))]
    gram2 = gram3 = 0.0
    if grams:
        gc = Counter(grams)
        gram2 = sum(1 for g in grams if gc[g] > 1) / len(grams)
        gram3 = sum(1 for g in grams if gc[g] > 2) / len(grams)
    return float(max(line2, gram2)), float(max(line3, gram3))


def stuffing(han: bool, tokens: str | list[str]) -> float:
    """Share of the most repeated content word (2-char Han words / English words of 5+ letters)."""
    if han:
        toks = [tokens[i: i + 2] for i in range(0, len(tokens) - 1, 1)]
    else:
        toks = [w for w in tokens if len(w) >= 5]
    if len(toks) < 20:
        return 0.0
    top = Counter(toks).most_common(1)[0][1]
    return float(top / len(toks))


def raw_features(texts: Sequence[str], lm: CharLM) -> np.ndarray:
    """(n, len(RATER_FEATURES) + 2) before :meth:`ScriptStats.standardise`; col -2 = number of sentences
    (capped at MAX_SENTENCES), col -1 = is_han."""
    heads = [(t or "")[:MAX_CHARS] for t in texts]
    mean, tail = lm.score(heads, MAX_CHARS)
    ends = lm.end_logprobs([t or "" for t in texts])
    words_end = lm.word_end_logprobs([t or "" for t in texts])
    typical = line_end_typicality(texts, lm)
    out = np.zeros((len(heads), len(RATER_FEATURES) + 2))
    for i, t in enumerate(heads):
        han = mostly_han(t)
        nonspace = max(len(t) - len(_SPACE.findall(t)), 1)
        units = sentence_units(t, han)
        tokens: str | list[str] = _NOT_HAN.sub("", t) if han else _WORD.findall(t.lower())
        n_lines = max(len(_LINE.findall(t)), 1)
        nav_lines = min(len(_NAV_LINE.findall(t)) / n_lines, 1.0)
        clean_end = 1.0 if ends_complete(texts[i] or "") else 0.0
        out[i] = [mean[i], tail[i], cohesion(units), lead(units), order_breaks(t), clean_end,
                  max(float(ends[i]), -6.0) / 6.0 + 1.0, _density(_SPAM, t),
                  nav_lines, len(_NOISE.findall(t)) / nonspace * 10, *repetition(t, han, tokens), stuffing(han, tokens),
                  coherence(units), title_lead(t), bracket_breaks(texts[i] or ""),
                  float("nan") if han else max(float(words_end[i]), -6.0) / 6.0 + 1.0, question_position(t),
                  typical[i], dangling_labels(texts[i] or ""), anaphoric_start(t), formula_position(t),
                  float(np.log10(max(len(texts[i] or ""), 10))),
                  float(len(units)), 1.0 if han else 0.0]
    return out


@dataclass
class ScriptStats:
    """Per script (Han / other), from the pair originals: mean and standard deviation of the two fluency
    columns, and the mean of every feature, used in place of a feature that a text is too short to define
    (cohesion, lead, coherence, title_lead on a text of fewer than 4 sentences or 3 lines): a short text is
    then rated like a typical text on those signals instead of being marked down for its length. The
    sentence-overlap signals (cohesion, lead, coherence) of a text of n sentences are shrunk towards that
    mean by (n - 3) / (n - 3 + SHRINK_SENTENCES): measured on four or five sentences they are mostly noise,
    and a fifth sentence should not move the score more than the fiftieth."""

    han: np.ndarray  # (2, 2): rows mean/std, cols fluency/fluency_tail
    other: np.ndarray
    impute: np.ndarray  # (2, len(RATER_FEATURES)): rows Han / other

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        out = raw[:, : len(RATER_FEATURES)].copy()
        is_han = raw[:, -1] > 0.5
        n_sent = np.maximum(raw[:, -2] - 3.0, 0.0)
        trust = n_sent / (n_sent + SHRINK_SENTENCES)
        for row, (mask, st) in enumerate(((is_han, self.han), (~is_han, self.other))):
            block = out[mask]
            missing = np.isnan(block)
            block[missing] = np.broadcast_to(self.impute[row], block.shape)[missing]
            t = trust[mask]
            for col in _SHRUNK:
                block[:, col] = t * block[:, col] + (1.0 - t) * self.impute[row, col]
            for col in _CENTRED:
                block[:, col] -= self.impute[row, col]
            block[:, 0:2] = (block[:, 0:2] - st[0]) / np.maximum(st[1], 1e-6)
            out[mask] = block
        return np.clip(out, -12, 12)


def soft_clip(z: np.ndarray, lo: float = 0.5, hi: float = 4.5) -> np.ndarray:
    """The linear score kept inside 0..5 without flattening its ends: unchanged between ``lo`` and ``hi``,
    bent smoothly (tanh) towards 0 and 5 beyond. Strictly increasing, so two very good (or very bad) texts
    keep their order instead of tying at the bound (a hard clip at 5 made an excellent document and its
    truncated twin both 5.0)."""
    z = np.asarray(z, dtype=np.float64)
    out = z.copy()
    up, down = z > hi, z < lo
    out[up] = hi + (5.0 - hi) * np.tanh((z[up] - hi) / (5.0 - hi))
    out[down] = lo - lo * np.tanh((lo - z[down]) / lo)
    return out


@dataclass
class QualityRater:
    lm: CharLM
    stats: ScriptStats
    coef: np.ndarray  # (len(RATER_FEATURES),) on the 0-5 scale
    intercept: float
    meta: dict[str, Any] = field(default_factory=dict)

    def features(self, texts: Sequence[str]) -> np.ndarray:
        return self.stats.standardise(raw_features(texts, self.lm))

    def predict_features(self, feats: np.ndarray) -> np.ndarray:
        return soft_clip(feats @ self.coef + self.intercept)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        empty = np.array([not (t or "").strip() for t in texts])
        scores = self.predict_features(self.features(texts)) if len(texts) else np.zeros(0)
        return np.where(empty, 0.0, scores)

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.lm.arrays(), "stats_han": self.stats.han, "stats_other": self.stats.other,
                "stats_impute": self.stats.impute,
                "coef": self.coef.astype(np.float64), "intercept": np.array([self.intercept], dtype=np.float64),
                "feature_names": np.array(RATER_FEATURES, dtype="U32")}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], meta: dict[str, Any]) -> QualityRater:
        names = tuple(str(x) for x in a["feature_names"])
        if names != RATER_FEATURES:
            raise ValueError(f"rater features {names} differ from this code's {RATER_FEATURES}")
        return cls(CharLM.from_arrays(a), ScriptStats(a["stats_han"], a["stats_other"], a["stats_impute"]), a["coef"],
                   float(a["intercept"][0]), meta)


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
def script_stats(raw: np.ndarray) -> ScriptStats:
    is_han = raw[:, -1] > 0.5
    feats = raw[:, : len(RATER_FEATURES)]

    def stats(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = feats[mask] if mask.any() else feats
        means = np.nan_to_num(np.nanmean(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0))
        fl = np.where(np.isnan(x[:, 0:2]), means[0:2], x[:, 0:2])
        return np.vstack([fl.mean(axis=0), fl.std(axis=0) + 1e-6]), means

    (han, han_means), (other, other_means) = stats(is_han), stats(~is_han)
    return ScriptStats(han, other, np.vstack([han_means, other_means]))


def fit_pairwise(orig: np.ndarray, twin: np.ndarray, c: float = 1.0) -> tuple[np.ndarray, float]:
    """Weights w with w.(orig - twin) > 0 (logistic regression on the differences, length left out), scaled so
    the originals' median lands at 3.75 and the twins' at 1.25; log_length gets the fixed LENGTH_TIEBREAK."""
    from sklearn.linear_model import LogisticRegression

    diff = (orig - twin)[:, :-1]
    X = np.vstack([diff, -diff])
    y = np.concatenate([np.ones(len(diff)), np.zeros(len(diff))])
    clf = LogisticRegression(C=c, fit_intercept=False, max_iter=2000)
    clf.fit(X, y)
    w = clf.coef_[0]
    hi, lo = float(np.median(orig[:, :-1] @ w)), float(np.median(twin[:, :-1] @ w))
    a = 2.5 / max(hi - lo, 1e-6)
    coef = np.concatenate([w * a, [LENGTH_TIEBREAK]])
    return coef, 3.75 - float(np.median(orig @ coef))


def fit_scores(feats: np.ndarray, scores: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Least squares (ridge) of annotated 0-5 scores on the same features (the LLM-annotation path)."""
    from sklearn.linear_model import Ridge

    reg = Ridge(alpha=alpha).fit(feats, scores)
    return reg.coef_.astype(np.float64), float(reg.intercept_)


def twin_pairs(texts: Sequence[str], salt: str = "rater") -> tuple[list[str], list[str], list[str]]:
    """(originals, twins, kinds): each eligible text with one degradation, the kinds taken in turn."""
    from medcorpus.classify.degrade import DEGRADATIONS, degrade, eligible

    kinds = list(DEGRADATIONS)
    orig: list[str] = []
    twins: list[str] = []
    used: list[str] = []
    for text in texts:
        if not eligible(text):
            continue
        kind = kinds[len(orig) % len(kinds)]
        twin = degrade(text, kind, _seed(salt, text))
        if twin != text:
            orig.append(text)
            twins.append(twin)
            used.append(kind)
    return orig, twins, used


def split_texts(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(reference, pair texts): two disjoint halves by a stable hash of each text."""
    ref = [t for t in texts if _seed("half", t) % 2 == 0]
    return ref, [t for t in texts if _seed("half", t) % 2 == 1]


def _seed(*parts: str) -> int:
    import hashlib

    return int(hashlib.sha1("\x1f".join(p[:200] for p in parts).encode("utf-8")).hexdigest()[:12], 16)


def train_rater(reference: Sequence[str], pair_texts: Sequence[str], *, order: int = 3, bits: int = 20,
                c: float = 10.0) -> tuple[QualityRater, dict[str, Any]]:
    """Fluency model on ``reference``, per-script statistics, then pairwise weights on twins of ``pair_texts``.

    The pair texts must be text the fluency model never saw (a model scores its own training text as far
    more fluent than new text, and the statistics would then mis-standardise every real document): any pair
    text that is also a reference text is dropped. ``split_texts`` halves one list for both roles."""
    lm = CharLM.train(reference, order=order, bits=bits, max_chars=MAX_CHARS)
    seen = set(reference)
    orig, twins, kinds = twin_pairs([t for t in pair_texts if t not in seen])
    if len(orig) < 10:
        raise ValueError(f"the rater needs at least 10 texts of 200+ characters with 4+ sentences; got {len(orig)}")
    raw_o, raw_t = raw_features(orig, lm), raw_features(twins, lm)
    stats = script_stats(raw_o)
    coef, intercept = fit_pairwise(stats.standardise(raw_o), stats.standardise(raw_t), c)
    model = QualityRater(lm, stats, coef, intercept)
    info = {"reference_texts": len(reference), "reference_chars": int(sum(min(len(t), MAX_CHARS) for t in reference)),
            "pairs": len(orig), "pairs_by_kind": dict(Counter(kinds)),
            "weights": {n: round(float(w), 4) for n, w in zip(RATER_FEATURES, coef)},
            "intercept": round(intercept, 4)}
    return model, info
