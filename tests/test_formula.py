"""lme4 bar-syntax parser: a table of formulas, every error path, and invariances."""
from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlglm.design.formula import FormulaError, ParsedFormula, has_bar_term, parse_lme4

# formula -> (fixed, groups, re_formula, diagonal). The re_formula column follows lme4's
# reading of the bar term: (x | g) has an intercept too; (0 + x | g) and (x - 1 | g) do not.
CASES = {
    "y ~ x + (1 | g)": ("y ~ x", "g", "1", False),
    "y ~ x + I(x**2) + (1 + x | g)": ("y ~ x + I(x**2)", "g", "~x", False),
    "y ~ x + (x | g)": ("y ~ x", "g", "~x", False),
    "y ~ (1 + x | g) + x": ("y ~ x", "g", "~x", False),
    "y ~ x + (1 + x | g) + z": ("y ~ x + z", "g", "~x", False),
    "y ~ x + (0 + x | g)": ("y ~ x", "g", "~0 + x", False),
    "y ~ x + (x - 1 | g)": ("y ~ x", "g", "~0 + x", False),
    "y ~ x + (-1 + x | g)": ("y ~ x", "g", "~0 + x", False),
    "y ~ x + (1 + x || g)": ("y ~ x", "g", "~x", True),
    "y ~ x + (x + z || g)": ("y ~ x", "g", "~x + z", True),
    "y ~ x + (1 + x + log(z) | g)": ("y ~ x", "g", "~x + log(z)", False),
    "y ~ I((x+1)**2) + log(x) + (1 | g)": ("y ~ I((x+1)**2) + log(x)", "g", "1", False),
    "y ~ (1 | g)": ("y ~ 1", "g", "1", False),
    "y~x+(1|g)": ("y ~ x", "g", "1", False),
    "y ~ x * z + (1 | g) - 1": ("y ~ x * z - 1", "g", "1", False),
    "y ~ 0 + x + (1 | g)": ("y ~ 0 + x", "g", "1", False),
    "y ~ I(a | b) + (1 | g)": ("y ~ I(a | b)", "g", "1", False),
    "y ~ C(f, Treatment('b')) + (1 | g)": ("y ~ C(f, Treatment('b'))", "g", "1", False),
    "y ~ x + (1 | `my group`)": ("y ~ x", "my group", "1", False),
    "y ~ x + (1 | Q('my group'))": ("y ~ x", "my group", "1", False),
    "y ~ x + (1 | school.id)": ("y ~ x", "school.id", "1", False),
    "y ~ x +\n  (1 + x | g)": ("y ~ x", "g", "~x", False),
    # R's ^ becomes Python's ** (arithmetic inside I(), interaction power outside)
    "y ~ age + I(age^2) + urban + livch + (1 + urban | district)":
        ("y ~ age + I(age**2) + urban + livch", "district", "~urban", False),
    "y ~ (a + b)^2 + (1 + I(a^2) | g)": ("y ~ (a + b)**2", "g", "~I(a**2)", False),
    # the reference cases of /work/shared/reference/references.R
    "cbind(incidence, size - incidence) ~ period + (1 | herd)":
        ("cbind(incidence, size - incidence) ~ period", "herd", "1", False),
    "TICKS ~ YEAR + cHEIGHT + (1 | BROOD)": ("TICKS ~ YEAR + cHEIGHT", "BROOD", "1", False),
    "mAch ~ meanses * cses + sector * cses + (1 + cses | school)":
        ("mAch ~ meanses * cses + sector * cses", "school", "~cses", False),
}


@pytest.mark.parametrize("formula", list(CASES))
def test_parse_table(formula):
    fixed, groups, re_formula, diagonal = CASES[formula]
    p = parse_lme4(formula)
    assert isinstance(p, ParsedFormula)
    assert (p.fixed, p.groups, p.re_formula, p.diagonal) == (fixed, groups, re_formula, diagonal)
    assert p.formula == formula
    assert p.fixed == f"{p.response} ~ {p.fixed_rhs}"
    assert has_bar_term(formula)


def test_response_and_random_text():
    p = parse_lme4("cbind(incidence, size - incidence) ~ period + (1 | herd)")
    assert p.response == "cbind(incidence, size - incidence)"
    assert p.response_terms == ("incidence", "size - incidence")
    assert p.random == "(1 | herd)"
    q = parse_lme4("log(y) ~ x + (1 + x | g)")
    assert (q.response, q.response_terms, q.fixed_rhs) == ("log(y)", ("log(y)",), "x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.groups = "h"


def test_no_bar_term_allowed_when_not_required():
    p = parse_lme4("y ~ x + I(x^2)", require_re=False)
    assert (p.fixed, p.groups, p.re_formula, p.random) == ("y ~ x + I(x**2)", None, None, None)
    assert not has_bar_term("y ~ x")


# formula -> (text in the message, offending token the caret must point at)
ERRORS = {
    "y x + (1 | g)": ("no '~'", "y x + (1 | g)"),
    "~ x + (1 | g)": ("no response", "~"),
    "y ~ x ~ z + (1 | g)": ("more than one '~'", "~ z"),
    "y ~ ": ("nothing after '~'", "~"),
    "y ~ x + (1 | g": ("'(' is never closed", "(1 | g"),
    "y ~ x) + (1 | g)": ("')' has no matching '('", ") +"),
    "y ~ I(log(x) + (1 | g)": ("'(' is never closed", "(log"),
    "y ~ x + (1 | g]": ("']' does not close '('", "]"),
    "y ~ Q('x) + (1 | g)": ("unterminated string", "'x)"),
    "y ~ x + (1 | a) + (1 | a)": ("(1 | a) appears twice", "(1 | a)"),
    "y ~ x + (1 | a/b) + (1 | a:b)": ("(1 | a:b) appears twice", "(1 | a:b)"),
    "y ~ x + (1 | a//b)": ("empty grouping factor around '/'", "/b"),
    "y ~ x + (1 | a:)": ("empty grouping factor", ")"),
    "y ~ x + ( | g)": ("empty random-effects term", "| g"),
    "y ~ x + (1 | )": ("no grouping factor", "| )"),
    "y ~ x + (0 | g)": ("no effects", "(0 | g)"),
    "y ~ x + (1 | factor(g))": ("must be a column name", "factor(g)"),
    "y ~ x + (1 | a | b)": ("one '|'", "| b"),
    "y ~ x - (1 | g)": ("cannot be subtracted", "(1 | g)"),
    "y ~ x + 1 | g": ("must be in parentheses", "| g"),
    "y ~ x * (1 | g)": ("must be a separate term", "| g)"),
    "y ~ x + + (1 | g)": ("missing term", "+ (1"),
    "y ~ x + (1 | g) +": ("missing term", "+"),
    "cbind(s) ~ x + (1 | g)": ("two arguments", "cbind(s)"),
    "y ~ x": ("no random-effects term like (1 | group); use statsmodels' GLM/OLS", "x"),
}


# Several terms (lme4's findbars): nesting a/b expands to a and a:b, an interaction
# a:b names one factor of the combined levels, || marks uncorrelated effects.
MULTI = {
    "y ~ x + (1 | school/class)": [("1", ("school",), False), ("1", ("school", "class"), False)],
    "y ~ x + (1 | school) + (1 | school:class)": [("1", ("school",), False),
                                                  ("1", ("school", "class"), False)],
    "y ~ (1 | subject) + (1 | item)": [("1", ("subject",), False), ("1", ("item",), False)],
    "y ~ days + (1 + days | subject) + (1 | item)": [("~days", ("subject",), False),
                                                     ("1", ("item",), False)],
    "y ~ x + (1 + x || g) + (1 | h)": [("~x", ("g",), True), ("1", ("h",), False)],
    "y ~ x + (1 | a/b/c)": [("1", ("a",), False), ("1", ("a", "b"), False),
                            ("1", ("a", "b", "c"), False)],
    "y ~ x + (x | g) + (0 + z | g)": [("~x", ("g",), False), ("~0 + z", ("g",), False)],
}


@pytest.mark.parametrize("formula", list(MULTI))
def test_several_random_terms(formula):
    p = parse_lme4(formula)
    got = [(t.re_formula, t.factors, t.diagonal) for t in p.random_terms]
    assert got == MULTI[formula]
    assert p.groups == p.random_terms[0].group
    assert "|" not in p.fixed


def _caret_column(message: str) -> int:
    """Column of the first '^' in the last line of a FormulaError message."""
    return message.splitlines()[-1].index("^")


@pytest.mark.parametrize("formula", list(ERRORS))
def test_errors_point_at_the_offending_token(formula):
    text, token = ERRORS[formula]
    with pytest.raises(FormulaError) as info:
        parse_lme4(formula)
    err = info.value
    assert isinstance(err, ValueError)
    message = str(err)
    assert text in message
    assert err.formula == formula
    assert formula[err.pos:].startswith(token), (formula, err.pos)
    lines = message.splitlines()
    assert lines[-2] == "    " + formula.replace("\n", " ")
    assert _caret_column(message) == 4 + err.pos


def test_no_tilde_underlines_the_whole_formula():
    with pytest.raises(FormulaError) as info:
        parse_lme4("y x")
    assert str(info.value).splitlines()[-1] == "    ^^^"


def test_type_error_for_non_strings():
    with pytest.raises(TypeError):
        parse_lme4(None)


_names = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)


@given(st.lists(_names, min_size=1, max_size=4, unique=True), st.data())
def test_bar_term_position_does_not_matter(fixed_terms, data):
    # Inserting the bar term at any position gives the same parse (lme4's findbars/nobars).
    slot = data.draw(st.integers(0, len(fixed_terms)))
    rhs = fixed_terms[:slot] + ["(1 + u || grp)"] + fixed_terms[slot:]
    p = parse_lme4("y ~ " + " + ".join(rhs))
    assert p.fixed == "y ~ " + " + ".join(fixed_terms)
    assert (p.groups, p.re_formula, p.diagonal) == ("grp", "~u", True)


@given(st.text(alphabet="()|~+ xg1", max_size=20))
def test_parse_never_fails_with_anything_but_formula_errors(formula):
    try:
        parse_lme4(formula, require_re=False)
    except FormulaError as err:
        assert err.pos is None or 0 <= err.pos <= len(formula)


# ------------------------------------------------------ offset() terms and update()
from mlglm.design.formula import split_offsets, update_formula  # noqa: E402

#: rhs -> (rhs without offsets, offsets); R's ^ becomes ** as everywhere
OFFSET_CASES = {
    "x + offset(log(n)) + z": ("x + z", ("log(n)",)),
    "offset(log(n^2))": ("1", ("log(n**2)",)),
    "x + offset(a) + offset(b) - 1": ("x - 1", ("a", "b")),
    "x + offsets(n)": ("x + offsets(n)", ()),
    "x + I(offset(n))": ("x + I(offset(n))", ()),
}


@pytest.mark.parametrize("rhs", list(OFFSET_CASES))
def test_split_offsets(rhs):
    assert split_offsets(rhs) == OFFSET_CASES[rhs]


def test_a_subtracted_offset_is_an_error():
    with pytest.raises(FormulaError, match="offset"):
        split_offsets("x - offset(n)")


#: update formula -> result for the model "y ~ a + x + (1 + x | g)" (R's update.formula
#: rules: "." is the old side; a "." term carries the random-effects term along)
UPDATE_CASES = {
    "~ . - x": "y ~ a + x - x + (1 + x | g)",
    ". ~ . + z": "y ~ a + x + z + (1 + x | g)",
    "~ . * z": "y ~ (a + x) * z + (1 + x | g)",
    "~ . - (1 + x | g) + (1 | g)": "y ~ a + x + (1 | g)",
    "~ . - (1+x|g) + (0 + x || g)": "y ~ a + x + (0 + x || g)",
    "log(.) ~ .": "log((y)) ~ a + x + (1 + x | g)",
    "~ x + (1 | g)": "y ~ x + (1 | g)",
}


@pytest.mark.parametrize("new", list(UPDATE_CASES))
def test_update_formula(new):
    got = update_formula("y ~ a + x + (1 + x | g)", new)
    assert got == UPDATE_CASES[new]
    parse_lme4(got)                           # and lme4's parser takes the result


def test_update_formula_errors():
    with pytest.raises(FormulaError, match="'~'"):
        update_formula("y ~ x + (1 | g)", ". - x")
    with pytest.raises(FormulaError, match="not the random-effects term"):
        update_formula("y ~ x + (1 | g)", "~ . - (1 | h)")
