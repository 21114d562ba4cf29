# Profile-likelihood confidence intervals from lme4 for the Laplace reference cases.
# Usage: Rscript profile_ci.R DATADIR OUT.json [CASE ...]
# For each case (default: all): glmer(..., nAGQ = 1) as in references.R, then
#   confint(m, method = "profile", level = 0.95, oldNames = FALSE)
# -- for contra_rs with devtol = 1e-3: lme4's fit of that model stops short of the
# optimum (its deviance is ~5e-4 above the best), so profile() meets lower deviances
# and aborts ("profiling detected new, lower deviance") at the default devtol = 1e-9;
# refitting with bobyqa or from a tighter start did not help (bobyqa ran > 35 min) --
# and, for the high-school LMM, lmer(..., REML = FALSE) the same way.
# OUT.json is rewritten after each case; cases already in it are kept.
# Rows are lme4's parameter names: sd_<term>|<group>, cor_<term>.<term>|<group>, fixed effects.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); dd <- args[1]; out <- args[2]; only <- args[-(1:2)]
rd <- function(n) read.csv(file.path(dd, paste0(n, ".csv")), stringsAsFactors = TRUE)
prep <- list(
  contraception = function(d) { d$district <- factor(d$district); d$y <- as.integer(d$use == "Y"); d$livch <- factor(d$livch, levels=c("0","1","2","3+")); d },
  cbpp = function(d) { d$herd <- factor(d$herd); d$period <- factor(d$period); d },
  grouseticks = function(d) { d$BROOD <- factor(d$BROOD); d$YEAR <- factor(d$YEAR); d },
  hsb = function(d) { d$school <- factor(d$school); d }
)
cases <- list(
  list(id="contra_ri", data="contraception", formula="y ~ age + I(age^2) + urban + livch + (1 | district)", family="binomial"),
  list(id="contra_rs", data="contraception", formula="y ~ age + I(age^2) + urban + livch + (1 + urban | district)", family="binomial"),
  list(id="cbpp_ri", data="cbpp", formula="cbind(incidence, size - incidence) ~ period + (1 | herd)", family="binomial"),
  list(id="grouse_ri", data="grouseticks", formula="TICKS ~ YEAR + cHEIGHT + (1 | BROOD)", family="poisson"),
  list(id="hsb_rs_ml", data="hsb", formula="mAch ~ meanses + cses + (1 + cses | school)", family="gaussian")
)
res <- if (file.exists(out)) fromJSON(out, simplifyVector = FALSE) else list()
for (cs in cases) {
  if (length(only) && !(cs$id %in% only)) next
  d <- prep[[cs$data]](rd(cs$data))
  f <- as.formula(cs$formula)
  m <- if (cs$family == "gaussian") lmer(f, d, REML = FALSE) else glmer(f, d, get(cs$family), nAGQ = 1)
  devtol <- if (cs$id == "contra_rs") 1e-3 else 1e-9
  t <- system.time(ci <- confint(m, method = "profile", level = 0.95, oldNames = FALSE,
                                 devtol = devtol))[["elapsed"]]
  res[[cs$id]] <- list(case = cs, seconds = t, loglik = as.numeric(logLik(m)), devtol = devtol,
                       names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
  cat(cs$id, "done", t, "s\n")
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
}
