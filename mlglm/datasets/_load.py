"""Loaders for the real data sets bundled with mlglm.

Each loader reads one CSV shipped inside the package (through
``importlib.resources``, so it works from an installed wheel) and prepares it
the way the R reference scripts in the project do (``references.R``,
``references_lmm.R``): identifier columns become strings, covariate factors
become pandas Categoricals whose first level is R's reference level, so
patsy's treatment coding and lme4's give the same contrasts.

Where each file comes from is written down in ``SOURCES.md`` next to the CSVs.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from importlib import resources
from typing import Callable

import pandas as pd

__all__ = ["load_hsb", "load_contraception", "load_cbpp", "load_grouseticks",
           "load", "describe", "list_datasets"]


def _read_csv(filename: str, *, id_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a bundled CSV; ``id_columns`` are read as strings, not numbers."""
    dtype = {col: str for col in id_columns}
    with resources.files(__package__).joinpath(filename).open("rb") as fh:
        return pd.read_csv(fh, dtype=dtype)


def _categorical(values: pd.Series, levels: list[str]) -> pd.Categorical:
    """Categorical with the given level order; fail loudly on unexpected values."""
    values = values.astype(str)
    unknown = sorted(set(values) - set(levels))
    if unknown:
        raise ValueError(f"unexpected values {unknown} for levels {levels}")
    return pd.Categorical(values, categories=levels)


def load_hsb() -> pd.DataFrame:
    """Mathematics achievement of 7185 pupils in 160 US high schools (HSB 1982).

    The High School and Beyond data used throughout Raudenbush & Bryk's
    *Hierarchical Linear Models* (2nd ed., Sage, 2002), as distributed in the R
    package mlmRev (``Hsb82``). Pupils (level 1) are nested in schools
    (level 2); the lecture's ``lmer`` examples model ``mAch``.

    Returns
    -------
    pandas.DataFrame
        7185 rows, one per pupil, with columns

        school : str
            School identifier (160 schools); the grouping column.
        minrty : Categorical, levels ["No", "Yes"]
            Whether the pupil belongs to an ethnic minority.
        sx : Categorical, levels ["Female", "Male"]
            Sex of the pupil.
        ses : float
            Socio-economic status (standardised composite score).
        mAch : float
            Mathematics achievement score.
        meanses : float
            Mean ``ses`` of the pupil's school (a level-2 covariate).
        sector : Categorical, levels ["Public", "Catholic"]
            School sector; "Public" is the reference level, as in the R
            reference script.
        cses : float
            ``ses`` centred at the school mean, ``ses - meanses``.
    """
    d = _read_csv("hsb.csv", id_columns=("school",))
    d["minrty"] = _categorical(d["minrty"], ["No", "Yes"])
    d["sx"] = _categorical(d["sx"], ["Female", "Male"])
    d["sector"] = _categorical(d["sector"], ["Public", "Catholic"])
    return d


def load_contraception() -> pd.DataFrame:
    """Contraceptive use of 1934 women in 60 districts of Bangladesh (1988 survey).

    A subsample of the 1988 Bangladesh Fertility Survey (main report: Huq &
    Cleland, *Bangladesh Fertility Survey 1989*, NIPORT, Dhaka, 1990), as
    distributed in the R package mlmRev (``Contraception``). Women (level 1)
    are nested in districts (level 2; district code 54 does not occur).

    Returns
    -------
    pandas.DataFrame
        1934 rows, one per woman, with columns

        woman : str
            Identifier of the woman.
        district : str
            District identifier (60 districts); the grouping column.
        use : Categorical, levels ["N", "Y"]
            Whether the woman used contraception at the time of the survey.
        livch : Categorical, levels ["0", "1", "2", "3+"]
            Number of living children; "0" is the reference level.
        age : float
            Age in years, centred at the sample mean.
        urban : Categorical, levels ["N", "Y"]
            Whether the woman lives in an urban area; "N" (rural) is the
            reference level.
        y : int
            1 if ``use == "Y"`` else 0 (the response of the reference fits).
    """
    d = _read_csv("contraception.csv", id_columns=("woman", "district"))
    d["use"] = _categorical(d["use"], ["N", "Y"])
    d["livch"] = _categorical(d["livch"], ["0", "1", "2", "3+"])
    d["urban"] = _categorical(d["urban"], ["N", "Y"])
    d["y"] = (d["use"] == "Y").astype("int64")
    return d


def load_cbpp() -> pd.DataFrame:
    """Contagious bovine pleuropneumonia in 15 Ethiopian zebu herds, 4 periods.

    Serological incidence of CBPP in a follow-up survey of 15 commercial herds
    in the Boji district of Ethiopia (Lesnoff et al., 2004, *Preventive
    Veterinary Medicine* 64, 27-40), as distributed in the R package lme4
    (``cbpp``). Some herd-periods are missing (lost to follow-up), hence 56
    rows rather than 60. The binomial response is ``incidence`` out of
    ``size``; in lme4, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``.

    Returns
    -------
    pandas.DataFrame
        56 rows, one per herd and period, with columns

        herd : str
            Herd identifier (15 herds); the grouping column.
        incidence : int
            Number of new serological cases in the herd during the period.
        size : int
            Herd size at the beginning of the period.
        period : Categorical, levels ["1", "2", "3", "4"]
            Follow-up period; "1" is the reference level.
    """
    d = _read_csv("cbpp.csv", id_columns=("herd",))
    d["period"] = _categorical(d["period"], ["1", "2", "3", "4"])
    d["incidence"] = d["incidence"].astype("int64")
    d["size"] = d["size"].astype("int64")
    return d


def load_grouseticks() -> pd.DataFrame:
    """Ticks on the heads of 403 red grouse chicks in 118 broods, 1995-1997.

    From Elston, Moss, Boulinier, Arrowsmith & Lambin (2001), "Analysis of
    aggregation, a worked example: numbers of ticks on red grouse chicks",
    *Parasitology* 122, 563-569, as distributed in the R package lme4
    (``grouseticks``). Chicks (level 1) are nested in broods; broods sit in
    locations. The Poisson reference fit is ``TICKS ~ YEAR + cHEIGHT + (1 | BROOD)``.

    Returns
    -------
    pandas.DataFrame
        403 rows, one per chick, with columns

        INDEX : str
            Chick identifier (one per row).
        TICKS : int
            Number of ticks counted on the chick's head.
        BROOD : str
            Brood identifier (118 broods); the grouping column.
        HEIGHT : int
            Height of the location above sea level, in metres.
        YEAR : Categorical, levels ["95", "96", "97"]
            Year of sampling minus 1900; "95" is the reference level.
        LOCATION : str
            Geographic location code (63 locations).
        cHEIGHT : float
            ``HEIGHT`` centred at its mean.
    """
    d = _read_csv("grouseticks.csv", id_columns=("INDEX", "BROOD", "LOCATION"))
    d["YEAR"] = _categorical(d["YEAR"], ["95", "96", "97"])
    d["TICKS"] = d["TICKS"].astype("int64")
    d["cHEIGHT"] = d["cHEIGHT"].astype("float64")
    return d


@dataclass(frozen=True)
class _Dataset:
    """Registry entry: loader, one-line title, grouping column, shape facts."""

    loader: Callable[[], pd.DataFrame]
    title: str
    groups: str
    rows: int
    n_groups: int


_REGISTRY: dict[str, _Dataset] = {
    "hsb": _Dataset(load_hsb, "Maths achievement of pupils in US high schools "
                    "(High School and Beyond 1982; mlmRev::Hsb82)", "school", 7185, 160),
    "contraception": _Dataset(load_contraception, "Contraceptive use of women in "
                              "Bangladeshi districts (mlmRev::Contraception)",
                              "district", 1934, 60),
    "cbpp": _Dataset(load_cbpp, "Contagious bovine pleuropneumonia incidence in "
                     "Ethiopian herds (lme4::cbpp)", "herd", 56, 15),
    "grouseticks": _Dataset(load_grouseticks, "Ticks on red grouse chicks in "
                            "broods (lme4::grouseticks)", "BROOD", 403, 118),
}


def _entry(name: str) -> _Dataset:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; "
                         f"available: {', '.join(_REGISTRY)}") from None


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set by name (see :func:`list_datasets`)."""
    return _entry(name).loader()


def describe(name: str) -> str:
    """Return the description of a bundled data set: source and every column."""
    entry = _entry(name)
    return f"{name}\n{'=' * len(name)}\n\n{inspect.getdoc(entry.loader)}"


def list_datasets() -> pd.DataFrame:
    """The bundled data sets, one row each.

    Returns
    -------
    pandas.DataFrame
        Indexed by name (the argument of :func:`load` and :func:`describe`),
        with columns ``description`` (one line), ``groups`` (the grouping
        column used by the reference fits), ``rows`` and ``n_groups``.
    """
    return pd.DataFrame(
        {"description": [e.title for e in _REGISTRY.values()],
         "groups": [e.groups for e in _REGISTRY.values()],
         "rows": [e.rows for e in _REGISTRY.values()],
         "n_groups": [e.n_groups for e in _REGISTRY.values()]},
        index=pd.Index(list(_REGISTRY), name="name"))
