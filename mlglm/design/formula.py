"""lme4 bar syntax, ``y ~ x + (1 + x | g) + (1 | h)``, translated to statsmodels' terms.

:func:`parse_lme4` works on the formula string only (no patsy, no data): it
finds the random-effects terms ``( ... | g)`` or ``( ... || g)``, removes them
from the right-hand side, and returns the fixed-effects formula and, per
term, the grouping factor (one column, or an interaction ``a:b`` of columns)
and a statsmodels-style effects formula (``"1"``, ``"~x"``, ``"~0 + x"``).
Nested grouping ``(1 | a/b)`` expands, as in lme4, to ``(1 | a) + (1 | a:b)``.
With one term the result is exactly what
``MixedLM.from_formula(fixed, data, groups=groups, re_formula=re_formula)``
expects. It plays the part of lme4's ``findbars``/``nobars``.

R spellings are translated where Python's differ: ``^`` becomes ``**``
(``I(age^2)`` is ``I(age**2)``; ``(a + b)^2`` is the same interaction
expansion in patsy), ``as.factor(x)`` becomes ``factor(x)`` (R's other function
names, ``log``, ``factor``, ``scale``, ... are provided where the formula is
evaluated, :mod:`mlglm.design.formula_env`), and a ``cbind(successes, failures)``
response is kept as written but also split into
:attr:`ParsedFormula.response_terms`.

Errors are :class:`FormulaError` (a ``ValueError``) whose message repeats the
formula with a caret under the offending part, like Python's SyntaxError.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FormulaError", "ParsedFormula", "RandomTerm", "parse_lme4", "has_bar_term"]

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_QUOTES = "'\"`"
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_QUOTED_NAME = re.compile(r"`([^`]+)`|Q\(\s*(['\"])(.+)\2\s*\)")
_AS_FACTOR = re.compile(r"as\.factor\s*\(")
_NO_RE_TERM = ("no random-effects term like (1 | group); use statsmodels' GLM/OLS "
               "for a model without random effects")


class FormulaError(ValueError):
    """A formula that cannot be parsed, with the place where it went wrong.

    Attributes
    ----------
    msg : str
        The message without the caret lines.
    formula : str or None
        The formula as given.
    pos : int or None
        0-based offset of the offending part in ``formula``.
    """

    def __init__(self, msg: str, formula: str | None = None,
                 pos: int | None = None, length: int = 1):
        self.msg, self.formula, self.pos = msg, formula, pos
        text = msg
        if formula is not None and pos is not None:
            shown = formula.replace("\n", " ").replace("\t", " ")
            text += f"\n    {shown}\n    {' ' * pos}{'^' * max(1, length)}"
        super().__init__(text)


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term after expansion of ``a/b``.

    Attributes
    ----------
    text : the term as written (for ``a/b`` the written term, shared by its parts).
    re_formula : effects, statsmodels style: ``"1"``, ``"~x"``, ``"~0 + x"``.
    factors : the grouping columns; two or more for an interaction ``a:b``.
    diagonal : ``||`` (uncorrelated effects).
    """

    text: str
    re_formula: str
    factors: tuple[str, ...]
    diagonal: bool

    @property
    def group(self) -> str:
        """The grouping factor's name, ``"a"`` or ``"a:b"``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4-style formula split into the pieces statsmodels wants.

    Attributes
    ----------
    formula : str
        The formula as given.
    response : str
        Left-hand side, e.g. ``"y"`` or ``"cbind(incidence, size - incidence)"``.
    response_terms : tuple of str
        The response's columns: ``("y",)``, or the two arguments of ``cbind``,
        e.g. ``("incidence", "size - incidence")`` (successes, failures).
    fixed : str
        Fixed-effects formula, ``response ~ fixed_rhs``.
    fixed_rhs : str
        Right-hand side without the random-effects term ("1" if nothing is left).
    groups : str or None
        Grouping factor of the first random-effects term (``"a:b"`` for an
        interaction); None when there is none.
    re_formula : str or None
        statsmodels random-effects formula of the first term: ``"1"``
        (intercept only), ``"~x"`` (intercept and slope) or ``"~0 + x"``.
    diagonal : bool
        True for ``||`` in the first term (uncorrelated random effects).
    random : str or None
        The first random-effects term as written, e.g. ``"(1 + x | g)"``.
    random_terms : tuple of RandomTerm
        Every random-effects term, ``a/b`` expanded, in the order written.
    """

    formula: str
    response: str
    response_terms: tuple[str, ...]
    fixed: str
    fixed_rhs: str
    groups: str | None
    re_formula: str | None
    diagonal: bool
    random: str | None
    random_terms: tuple = ()


@dataclass(frozen=True)
class _Term:
    """One term of a sum: its sign and its [start, end) span in the formula."""

    sign: str
    start: int
    end: int


class _Scan:
    """Bracket depth of every character of a formula, outside string literals.

    ``depth[i]`` is the number of brackets open around character i (a bracket
    itself counts as outside), or -1 inside a quoted string or backticks;
    ``match`` maps each opening bracket's offset to its closing one.
    """

    def __init__(self, text: str):
        self.text = text
        self.depth = [0] * len(text)
        self.match: dict[int, int] = {}
        stack: list[int] = []
        quote, quote_at, escaped = None, -1, False
        for i, ch in enumerate(text):
            if quote is not None:
                self.depth[i] = -1
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
                continue
            if ch in _QUOTES:
                quote, quote_at, self.depth[i] = ch, i, -1
                continue
            if ch in _CLOSE:
                if not stack:
                    raise FormulaError(f"unbalanced parentheses: {ch!r} has no matching "
                                       f"{_CLOSE[ch]!r}", text, i)
                if text[stack[-1]] != _CLOSE[ch]:
                    raise FormulaError(f"unbalanced parentheses: {ch!r} does not close "
                                       f"{text[stack[-1]]!r}", text, i)
                self.match[stack.pop()] = i
            self.depth[i] = len(stack)
            if ch in _OPEN:
                stack.append(i)
        if quote is not None:
            raise FormulaError(f"unterminated string: {quote} is never closed", text, quote_at)
        if stack:
            raise FormulaError(f"unbalanced parentheses: {text[stack[-1]]!r} is never closed",
                               text, stack[-1])

    def find(self, chars: str, start: int, end: int, level: int) -> list[int]:
        """Offsets in [start, end) of any of ``chars`` at bracket depth ``level``."""
        return [i for i in range(start, end)
                if self.text[i] in chars and self.depth[i] == level]

    def strip(self, start: int, end: int) -> tuple[int, int]:
        """Narrow [start, end) to exclude surrounding whitespace."""
        while start < end and self.text[start].isspace():
            start += 1
        while end > start and self.text[end - 1].isspace():
            end -= 1
        return start, end

    def piece(self, start: int, end: int) -> str:
        """The text of [start, end), stripped, with R's ``^`` written as ``**`` and R's
        ``as.factor(`` as ``factor(`` (``as`` is a Python keyword; ``factor`` is R's
        name for patsy's ``C``, :mod:`mlglm.design.formula_env`)."""
        start, end = self.strip(start, end)
        out, i = [], start
        while i < end:
            ch = self.text[i]
            if self.depth[i] >= 0 and ch == "^":
                out.append("**")
            elif (self.depth[i] >= 0 and self.text.startswith("as.factor", i)
                  and _AS_FACTOR.match(self.text, i)
                  and (i == 0 or not (self.text[i - 1].isalnum() or self.text[i - 1] in "_."))):
                out.append("factor")
                i += len("as.factor")
                continue
            else:
                out.append(ch)
            i += 1
        return "".join(out)

    def terms(self, start: int, end: int, level: int) -> list[_Term]:
        """Split [start, end) into the terms of a sum at bracket depth ``level``."""
        ops = self.find("+-", start, end, level)
        bounds = [start - 1] + ops + [end]
        out = []
        for k in range(len(bounds) - 1):
            a, b = self.strip(bounds[k] + 1, bounds[k + 1])
            sign = self.text[bounds[k]] if k > 0 else "+"
            if a == b:
                if k == 0 and ops:             # leading unary sign, as in "-1 + x"
                    continue
                at = bounds[k + 1] if bounds[k + 1] < end else bounds[k]
                raise FormulaError("missing term: an operator has nothing on one side",
                                   self.text, at)
            out.append(_Term(sign, a, b))
        return out

    def is_call(self, open_at: int) -> bool:
        """Whether the bracket at ``open_at`` opens a function call like ``log(``."""
        i = open_at - 1
        while i >= 0 and self.text[i].isspace():
            i -= 1
        return i >= 0 and (self.text[i].isalnum() or self.text[i] in "_.")


def _bar_term(scan: _Scan, term: _Term) -> list[int] | None:
    """Offsets of the ``|`` of a term like ``(1 + x | g)``; None for other terms."""
    if scan.text[term.start] != "(" or scan.match[term.start] != term.end - 1:
        return None
    level = scan.depth[term.start] + 1
    bars = scan.find("|", term.start + 1, term.end - 1, level)
    return bars or None


def _grouping(scan: _Scan, start: int, end: int, bar_at: int) -> list[tuple[str, ...]]:
    """Grouping factors named in [start, end) after the bar at ``bar_at``.

    ``g`` gives [("g",)]; an interaction ``a:b`` gives [("a", "b")]; nesting
    ``a/b`` gives lme4's expansion [("a",), ("a", "b")] (and ``a/b/c`` three).
    """
    text = scan.text
    a, b = scan.strip(start, end)
    if a == b:
        raise FormulaError("random-effects term has no grouping factor after '|'",
                           text, bar_at)
    level = scan.depth[bar_at]
    slashes = scan.find("/", a, b, level)
    bounds = [a - 1] + slashes + [b]
    nested = []
    for k in range(len(bounds) - 1):
        pa, pb = scan.strip(bounds[k] + 1, bounds[k + 1])
        if pa == pb:
            raise FormulaError("empty grouping factor around '/'", text,
                               bounds[k + 1] if bounds[k + 1] < b else bounds[k])
        colons = scan.find(":", pa, pb, level)
        cb = [pa - 1] + colons + [pb]
        parts = []
        for i in range(len(cb) - 1):
            xa, xb = scan.strip(cb[i] + 1, cb[i + 1])
            parts.append(_column_name(scan, xa, xb))
        nested.append(tuple(parts))
    out, prefix = [], ()
    for parts in nested:
        prefix = prefix + parts
        out.append(prefix)
    return out


def _column_name(scan: _Scan, a: int, b: int) -> str:
    """A column name in [a, b): plain, `backquoted` or Q("quoted")."""
    text = scan.text
    name = text[a:b]
    if not name:
        raise FormulaError("empty grouping factor", text, a)
    if _NAME.fullmatch(name):
        return name
    quoted = _QUOTED_NAME.fullmatch(name)
    if quoted:
        return quoted.group(1) or quoted.group(3)
    raise FormulaError(f"the grouping factor must be a column name, got {name!r}; "
                       "create the column in the data first", text, a, b - a)


def _re_formula(scan: _Scan, term: _Term, start: int, end: int, bar_at: int) -> str:
    """statsmodels ``re_formula`` for the effects in [start, end), left of the bar."""
    text = scan.text
    a, b = scan.strip(start, end)
    if a == b:
        raise FormulaError("empty random-effects term: nothing before '|' "
                           "(write (1 | g) for a random intercept)", text, bar_at)
    intercept, slopes = True, []
    for t in scan.terms(a, b, scan.depth[bar_at]):
        word = text[t.start:t.end]
        if word in ("0", "1"):
            intercept = (word == "1") == (t.sign == "+")
        else:
            slopes.append((t.sign, scan.piece(t.start, t.end)))
    if not slopes:
        if not intercept:
            raise FormulaError("random-effects term has no effects (no intercept, no slopes)",
                               text, term.start, term.end - term.start)
        return "1"
    body = slopes[0][1] if slopes[0][0] == "+" else f"-{slopes[0][1]}"
    body += "".join(f" {sign} {s}" for sign, s in slopes[1:])
    return f"~{body}" if intercept else f"~0 + {body}"


def _response(scan: _Scan, end: int) -> tuple[str, tuple[str, ...]]:
    """Left-hand side text and its columns (two for ``cbind(s, f)``)."""
    text = scan.text
    a, b = scan.strip(0, end)
    if a == b:
        raise FormulaError("no response before '~'", text, end)
    response = scan.piece(a, b)
    if text.startswith("cbind", a):
        open_at = scan.strip(a + 5, b)[0]
        if text[open_at:open_at + 1] == "(" and scan.match[open_at] == b - 1:
            commas = scan.find(",", open_at + 1, b - 1, scan.depth[open_at] + 1)
            if len(commas) != 1:
                raise FormulaError("cbind() takes two arguments: successes, failures",
                                   text, a, b - a)
            parts = (scan.piece(open_at + 1, commas[0]), scan.piece(commas[0] + 1, b - 1))
            if not all(parts):
                raise FormulaError("cbind() has an empty argument", text, commas[0])
            return response, parts
    return response, (response,)


def _check_stray_bars(scan: _Scan, start: int, end: int, spans: list[_Term]) -> None:
    """Reject ``|`` outside a random-effects term and outside function calls."""
    for i in range(start, end):
        if scan.text[i] != "|" or scan.depth[i] < 0:
            continue
        if any(t.start < i < t.end for t in spans):
            continue
        opener = max((o for o, c in scan.match.items() if o < i < c), default=None)
        if opener is None:
            raise FormulaError("a random-effects term must be in parentheses, "
                               "like (1 | g)", scan.text, i)
        if not scan.is_call(opener):
            raise FormulaError("a random-effects term like (1 | g) must be a separate "
                               "term, added with '+'", scan.text, i)


def parse_lme4(formula: str, require_re: bool = True) -> ParsedFormula:
    """Split an lme4 formula into fixed part, grouping column and ``re_formula``.

    Parameters
    ----------
    formula : str
        An lme4-style formula with random-effects terms anywhere on the
        right-hand side, e.g. ``"y ~ x + I(x^2) + (1 + x | g) + (1 | h)"``.
        ``(1 | g)`` is a random intercept, ``(x | g)`` and ``(1 + x | g)`` a
        random intercept and slope, ``(0 + x | g)`` and ``(x - 1 | g)`` a
        slope only, ``(1 + x || g)`` uncorrelated effects, ``(1 | a:b)`` an
        intercept per combination of a and b, ``(1 | a/b)`` the nested pair
        ``(1 | a) + (1 | a:b)``.
    require_re : bool, default True
        Raise if there is no random-effects term (as ``glmer``/``lmer`` do).
        With False such a formula parses with ``groups=None``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        For no ``~``, unbalanced parentheses, a term written twice, an
        empty random-effects term or grouping factor, or no random-effects
        term when ``require_re``. The message points at the offending text.

    Examples
    --------
    >>> p = parse_lme4("y ~ age + I(age^2) + (1 + urban | district)")
    >>> p.fixed, p.groups, p.re_formula
    ('y ~ age + I(age**2)', 'district', '~urban')
    """
    if not isinstance(formula, str):
        raise TypeError(f"formula must be a string, got {type(formula).__name__}")
    scan = _Scan(formula)
    tildes = scan.find("~", 0, len(formula), 0)
    if not tildes:
        a, b = scan.strip(0, len(formula))
        raise FormulaError("formula has no '~' between response and predictors",
                           formula, a, b - a)
    if len(tildes) > 1:
        raise FormulaError("formula has more than one '~'", formula, tildes[1])
    tilde = tildes[0]
    response, response_terms = _response(scan, tilde)
    if not formula[tilde + 1:].strip():
        raise FormulaError("nothing after '~'", formula, tilde)

    terms = scan.terms(tilde + 1, len(formula), 0)
    bars = [(t, _bar_term(scan, t)) for t in terms]
    random = [(t, b) for t, b in bars if b is not None]
    _check_stray_bars(scan, tilde + 1, len(formula), [t for t, _ in random])

    groups = re_formula = random_text = None
    diagonal = False
    random_terms = []
    if random:
        for term, bar in random:
            if term.sign == "-":
                raise FormulaError("a random-effects term cannot be subtracted",
                                   formula, term.start, term.end - term.start)
            if len(bar) > 2 or (len(bar) == 2 and bar[1] != bar[0] + 1):
                raise FormulaError("a random-effects term has one '|' (or '||')",
                                   formula, bar[1])
            effects = _re_formula(scan, term, term.start + 1, bar[0], bar[0])
            text = formula[term.start:term.end]
            for factors in _grouping(scan, bar[-1] + 1, term.end - 1, bar[0]):
                rt = RandomTerm(text, effects, factors, len(bar) == 2)
                if any(r.factors == rt.factors and r.re_formula == rt.re_formula
                       for r in random_terms):
                    raise FormulaError(f"the random-effects term ({effects.lstrip('~')} | "
                                       f"{rt.group}) appears twice", formula, term.start,
                                       term.end - term.start)
                random_terms.append(rt)
        first = random_terms[0]
        groups, re_formula, diagonal, random_text = (first.group, first.re_formula,
                                                     first.diagonal, first.text)
    elif require_re:
        a, b = scan.strip(tilde + 1, len(formula))
        raise FormulaError(_NO_RE_TERM, formula, a, b - a)

    fixed_terms = [t for t, b in bars if b is None]
    rhs = ""
    for k, t in enumerate(fixed_terms):
        text = scan.piece(t.start, t.end)
        if k == 0:
            rhs = text if t.sign == "+" else f"-{text}"
        else:
            rhs += f" {t.sign} {text}"
    rhs = rhs or "1"
    return ParsedFormula(formula=formula, response=response, response_terms=response_terms,
                         fixed=f"{response} ~ {rhs}", fixed_rhs=rhs, groups=groups,
                         re_formula=re_formula, diagonal=diagonal, random=random_text,
                         random_terms=tuple(random_terms))


def has_bar_term(formula: str) -> bool:
    """Whether ``formula`` contains an lme4 random-effects term like ``(1 | g)``."""
    return parse_lme4(formula, require_re=False).groups is not None


def split_offsets(rhs: str) -> tuple[str, tuple[str, ...]]:
    """Take lme4's ``offset(expr)`` terms out of a right-hand side.

    Returns the right-hand side without them ("1" if nothing is left) and the
    expressions, R's ``^`` written as ``**``: ``"x + offset(log(n))"`` gives
    ``("x", ("log(n)",))``.
    """
    scan = _Scan(rhs)
    kept, offsets = [], []
    for t in scan.terms(0, len(rhs), 0):
        text = rhs[t.start:t.end]
        if text.startswith("offset") and _is_call_of(scan, t, "offset"):
            if t.sign == "-":
                raise FormulaError("an offset cannot be subtracted; write offset(-expr)",
                                   rhs, t.start, t.end - t.start)
            open_at = scan.strip(t.start + len("offset"), t.end)[0]
            offsets.append(scan.piece(open_at + 1, t.end - 1))
        else:
            kept.append((t.sign, scan.piece(t.start, t.end)))
    out = ""
    for k, (sign, text) in enumerate(kept):
        out = (text if sign == "+" else f"-{text}") if k == 0 else f"{out} {sign} {text}"
    return out or "1", tuple(offsets)


def _is_call_of(scan: _Scan, term: _Term, name: str) -> bool:
    """Whether ``term`` is exactly one call ``name(...)``."""
    open_at = scan.strip(term.start + len(name), term.end)[0]
    return (scan.text[term.start:term.start + len(name)] == name
            and scan.text[open_at:open_at + 1] == "("
            and scan.match.get(open_at) == term.end - 1)


def update_formula(old: str, new: str) -> str:
    """lme4's ``update()`` of a formula: ``"."`` in ``new`` stands for the
    corresponding side of ``old``.

    ``update_formula("y ~ a + x + (1 | g)", "~ . - x")`` is
    ``"y ~ a + x - x + (1 | g)"`` (patsy removes x, as R does). On the right, a
    ``"."`` term stands for the fixed part plus the random-effects term (a ``"."``
    inside a term, as in ``". * z"``, for the fixed part in parentheses); a
    random-effects term subtracted in ``new`` (``"~ . - (1 | g)"``) removes the
    matching term of ``old``. With several random-effects terms ``"."`` carries all
    of them (as written: ``(1 | a/b)`` stays one term).
    """
    old_parsed = parse_lme4(old, require_re=False)
    if "~" not in new:
        raise FormulaError("an update formula has a '~', e.g. '~ . - x' or '. ~ . + z'", new,
                           0, len(new))
    lhs, rhs = new.split("~", 1)
    lhs = lhs.strip()
    lhs = old_parsed.response if lhs in ("", ".") else re.sub(
        r"(?<![\w.])\.(?![\w.])", f"({old_parsed.response})", lhs)
    randoms = list(dict.fromkeys(t.text for t in old_parsed.random_terms))
    scan = _Scan(rhs)
    kept = []
    for t in scan.terms(0, len(rhs), 0):
        text = rhs[t.start:t.end]
        if t.sign == "-" and _bar_term(scan, t) is not None:
            match = [r for r in randoms if _same_term(text, r)]
            if match:
                randoms.remove(match[0])
                continue
            which = "the random-effects term" if len(randoms) < 2 else "a random-effects term"
            raise FormulaError(f"{text} is not {which} of the model "
                               f"({' + '.join(randoms) or None})", rhs, t.start,
                               t.end - t.start)
        kept.append((t.sign, text))
    body, dotted = "", False
    for k, (sign, text) in enumerate(kept):
        if re.fullmatch(r"\s*\.\s*", text):     # a whole term: + and - need no parentheses
            text, dotted = old_parsed.fixed_rhs, True
        elif re.search(r"(?<![\w.])\.(?![\w.])", text):
            text = re.sub(r"(?<![\w.])\.(?![\w.])", f"({old_parsed.fixed_rhs})", text)
            dotted = True
        body = (text if sign == "+" else f"-{text}") if k == 0 else f"{body} {sign} {text}"
    if dotted and randoms:                  # "." carries the random-effects terms along
        body += " + " + " + ".join(randoms)
    return f"{lhs} ~ {body or '1'}"


def _same_term(a: str, b: str) -> bool:
    """Random-effects terms equal up to spaces."""
    return re.sub(r"\s+", "", a) == re.sub(r"\s+", "", b)
