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
           "load_verbagg", "load_penicillin", "load_pastes", "load_sleepstudy", "load_chem97",
           "load_insteval", "load_epil", "load_salamanders", "load", "describe",
           "list_datasets"]


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


def load_verbagg() -> pd.DataFrame:
    """Verbal aggression: 316 people x 24 items, binary responses (crossed factors).

    From De Boeck & Wilson (eds., 2004), *Explanatory Item Response Models*,
    Springer, as distributed in the R package lme4 (``VerbAgg``). Every
    respondent (``id``) answered every item (``item``): the classic crossed
    random-effects GLMM ``r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)``.

    Returns
    -------
    pandas.DataFrame
        7584 rows with columns ``Anger`` (int, trait anger score), ``Gender``
        (Categorical F/M), ``item`` (str, 24 items), ``resp`` (Categorical
        no/perhaps/yes), ``id`` (str, 316 people), ``btype`` (Categorical
        curse/scold/shout), ``situ`` (Categorical other/self), ``mode``
        (Categorical want/do), ``r2`` (Categorical N/Y, the binary response:
        ``Y`` is "perhaps" or "yes").
    """
    d = _read_csv("verbagg.csv", id_columns=("id", "item"))
    d["Gender"] = _categorical(d["Gender"], ["F", "M"])
    d["resp"] = _categorical(d["resp"], ["no", "perhaps", "yes"])
    d["btype"] = _categorical(d["btype"], ["curse", "scold", "shout"])
    d["situ"] = _categorical(d["situ"], ["other", "self"])
    d["mode"] = _categorical(d["mode"], ["want", "do"])
    d["r2"] = _categorical(d["r2"], ["N", "Y"])
    return d


def load_penicillin() -> pd.DataFrame:
    """Penicillin potency: 24 plates x 6 samples, fully crossed (lme4::Penicillin).

    Davies & Goldsmith (eds., 1972), *Statistical Methods in Research and
    Production*, 4th ed., Oliver and Boyd, table 6.6. The diameter of the zone
    of growth inhibition, one measurement per plate and sample:
    ``diameter ~ 1 + (1 | plate) + (1 | sample)``.

    Returns
    -------
    pandas.DataFrame
        144 rows: ``diameter`` (int, mm), ``plate`` (str, 24), ``sample`` (str, 6).
    """
    return _read_csv("penicillin.csv", id_columns=("plate", "sample"))


def load_pastes() -> pd.DataFrame:
    """Strength of a chemical paste: casks nested in delivery batches (lme4::Pastes).

    Davies & Goldsmith (eds., 1972), *Statistical Methods in Research and
    Production*, 4th ed., Oliver and Boyd, table 6.5. Two assays of each of
    three casks from each of ten batches: ``strength ~ 1 + (1 | batch/cask)``.

    Returns
    -------
    pandas.DataFrame
        60 rows: ``strength`` (float), ``batch`` (str, 10), ``cask`` (str, a-c,
        labels repeated across batches), ``sample`` (str, ``batch:cask``, 30).
    """
    return _read_csv("pastes.csv", id_columns=("batch", "cask", "sample"))


def load_sleepstudy() -> pd.DataFrame:
    """Reaction times of 18 subjects over 10 days of sleep deprivation (lme4::sleepstudy).

    Belenky et al. (2003), Patterns of performance degradation and restoration
    during sleep restriction and subsequent recovery, *J. Sleep Res.* 12, 1-12.
    The textbook random-slope model is ``Reaction ~ Days + (Days | Subject)``.

    Returns
    -------
    pandas.DataFrame
        180 rows: ``Reaction`` (float, ms), ``Days`` (int, 0-9), ``Subject`` (str, 18).
    """
    return _read_csv("sleepstudy.csv", id_columns=("Subject",))


def load_chem97() -> pd.DataFrame:
    """A-level chemistry scores of 31,022 pupils in 2,410 schools in 131 LEAs (mlmRev::Chem97).

    Yang & Woodhouse (2001), Progress from GCSE to A and AS level: institutional
    and gender differences, and trends over time, *British Educational Research
    Journal* 27, 245-267. Pupils in schools in local education authorities: a
    three-level nested structure, ``score ~ gcsecnt + (1 | school) + (1 | lea)``.

    Returns
    -------
    pandas.DataFrame
        31,022 rows: ``score`` (int, A-level points), ``gcsecnt`` (float, centred
        average GCSE score), ``school`` (str, 2,410; unique across LEAs), ``lea``
        (str, 131).
    """
    return _read_csv("chem97.csv", id_columns=("school", "lea"))


def load_insteval() -> pd.DataFrame:
    """Lecture evaluations at ETH Zurich: students x lecturers, crossed (lme4::InstEval).

    Course evaluations 1996-2001 (lme4's ``InstEval``): ratings ``y`` (1-5) by
    2,972 students (``s``) of 1,128 lecturers (``d``) in 14 departments
    (``dept``): ``y ~ service + (1 | s) + (1 | d) + (1 | dept)``.

    Returns
    -------
    pandas.DataFrame
        73,421 rows: ``y`` (int), ``service`` (Categorical "0"/"1": the lecture
        was a service course for another department), ``s``, ``d``, ``dept`` (str).
    """
    d = _read_csv("insteval.csv", id_columns=("s", "d", "dept", "service"))
    d["service"] = _categorical(d["service"], ["0", "1"])
    return d


def load_epil() -> pd.DataFrame:
    """Seizure counts of 59 epileptics in four two-week periods (a drug trial).

    From Thall & Vail (1990), "Some covariance models for longitudinal count data with
    overdispersion", *Biometrics* 46, 657-671 (analysed by Breslow & Clayton 1993,
    *JASA* 88, 9-25), as distributed in the R package MASS (``epil``). Visits (level 1)
    are nested in patients; the counts are overdispersed, the classic negative binomial
    GLMM ``y ~ lbase * trt + lage + V4 + (1 | subject)``.

    Returns
    -------
    pandas.DataFrame
        236 rows, one per patient and period, with columns

        y : int
            Seizures in the two-week period.
        trt : Categorical, levels ["placebo", "progabide"]
            Treatment; placebo is the reference level, as in R.
        base : int
            Seizures in the eight-week baseline period.
        age : int
            Age in years.
        V4 : int
            1 for the fourth period, else 0.
        subject : str
            Patient identifier (59 patients); the grouping column.
        period : int
            Period 1 to 4.
        lbase : float
            log(base / 4), centred (MASS's coding).
        lage : float
            log(age), centred.
    """
    d = _read_csv("epil.csv", id_columns=("subject",))
    d["trt"] = _categorical(d["trt"], ["placebo", "progabide"])
    return d


def load_salamanders() -> pd.DataFrame:
    """Counts of stream salamanders at 23 sites, 4 visits each, 60% zeros (zero inflation).

    From Price, Muncy, Bonner, Drayer and Barton (2016), "Effects of mountaintop removal
    mining and valley filling on the occupancy and abundance of stream salamanders",
    *Journal of Applied Ecology* 53, 459-468 (data: Dryad, doi:10.5061/dryad.5m8f6), as
    distributed in the R package glmmTMB (``Salamanders``): the zero-inflated and hurdle
    GLMMs of glmmTMB's documentation, ``count ~ spp + mined + (1 | site)`` with
    ``ziformula = ~ spp + mined``.

    Returns
    -------
    pandas.DataFrame
        644 rows, one per site, visit and species, with columns

        site : str
            Site identifier (23 sites); the grouping column.
        mined : Categorical, levels ["yes", "no"]
            Whether the site was affected by mountaintop removal coal mining; "yes" is
            the reference level, as in R.
        cover : float
            Amount of cover objects in the stream (scaled).
        sample : int
            Visit 1 to 4.
        DOP : float
            Days since precipitation (scaled).
        Wtemp : float
            Water temperature (scaled).
        DOY : float
            Day of year (scaled).
        spp : Categorical, levels ["GP", "PR", "DM", "EC-A", "EC-L", "DES-L", "DF"]
            Species (and life stage), abbreviated; "GP" is the reference level, as in R.
        count : int
            Salamanders counted.
    """
    d = _read_csv("salamanders.csv", id_columns=("site",))
    d["mined"] = _categorical(d["mined"], ["yes", "no"])
    d["spp"] = _categorical(d["spp"], ["GP", "PR", "DM", "EC-A", "EC-L", "DES-L", "DF"])
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
    "verbagg": _Dataset(load_verbagg, "Verbal aggression items, people x items crossed "
                        "(lme4::VerbAgg)", "id, item", 7584, 316),
    "penicillin": _Dataset(load_penicillin, "Penicillin potency, plates x samples crossed "
                           "(lme4::Penicillin)", "plate, sample", 144, 24),
    "pastes": _Dataset(load_pastes, "Paste strength, casks nested in batches "
                       "(lme4::Pastes)", "batch, batch:cask", 60, 10),
    "sleepstudy": _Dataset(load_sleepstudy, "Reaction times under sleep deprivation "
                           "(lme4::sleepstudy)", "Subject", 180, 18),
    "chem97": _Dataset(load_chem97, "A-level chemistry, pupils in schools in LEAs "
                       "(mlmRev::Chem97)", "school, lea", 31022, 2410),
    "insteval": _Dataset(load_insteval, "Lecture ratings, students x lecturers crossed "
                         "(lme4::InstEval)", "s, d, dept", 73421, 2972),
    "epil": _Dataset(load_epil, "Seizure counts of epileptics in a drug trial, periods "
                     "within patients (MASS::epil)", "subject", 236, 59),
    "salamanders": _Dataset(load_salamanders, "Stream salamander counts at mined and "
                            "unmined sites, 60% zeros (glmmTMB::Salamanders)", "site", 644, 23),
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
