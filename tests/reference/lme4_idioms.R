# lme4 numbers for the idioms of issue 21 (tests/test_lme4_idioms.py).
# Usage: Rscript lme4_idioms.R DATADIR OUT.json   (DATADIR = mlglm/datasets)
# sleepstudy (lme4::sleepstudy as bundled in mlglm/datasets/sleepstudy.csv):
#   fm0 <- lmer(Reaction ~ Days + (1 | Subject), d)            REML (lmer's default)
#   fm1 <- lmer(Reaction ~ Days + (Days | Subject), d)         REML
# * predict(fm1, new, allow.new.levels = TRUE) for Subject 308 at Days 0 and 5 and a
#   subject the fit never saw at Days 5 (conditional, lme4's default re.form = NULL),
#   and predict(fm1, new, re.form = NA) (population level);
# * anova(fm0, fm1) (refits both by ML: "refitting model(s) with ML (instead of REML)")
#   and anova(fm0, fm1, refit = FALSE) (the REML criteria compared as they are);
# * confint(fm1, method = "profile") of the REML fit (lme4 profiles the ML deviance:
#   devfun2 refits by ML) and confint(refitML(fm1), method = "profile"), which equal;
#   the REML estimates and the ML refit's, for reference.
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
d <- read.csv(file.path(args[1], "sleepstudy.csv"), colClasses = c(Subject = "character"))
d$Subject <- factor(d$Subject)
fm0 <- lmer(Reaction ~ Days + (1 | Subject), d)
fm1 <- lmer(Reaction ~ Days + (Days | Subject), d)
new <- data.frame(Subject = c("308", "308", "new"), Days = c(0, 5, 5))
a <- anova(fm0, fm1)
a_reml <- anova(fm0, fm1, refit = FALSE)
tab <- function(a) list(npar = a$npar, AIC = a$AIC, BIC = a$BIC, logLik = a$logLik,
                        deviance = a$deviance, Chisq = a$Chisq[2], Df = a$Df[2],
                        p = a[["Pr(>Chisq)"]][2])
ci_reml <- confint(fm1, method = "profile", oldNames = FALSE)
ml <- refitML(fm1)
ci_ml <- confint(ml, method = "profile", oldNames = FALSE)
vc <- function(m) as.data.frame(VarCorr(m))$sdcor
out <- list(
  lme4_version = as.character(packageVersion("lme4")),
  new_subject = new$Subject, new_days = new$Days,
  predict_conditional = unname(predict(fm1, new, allow.new.levels = TRUE)),
  predict_population = unname(predict(fm1, new, re.form = NA)),
  anova_refit = tab(a), anova_reml = tab(a_reml),
  loglik_reml = c(as.numeric(logLik(fm0)), as.numeric(logLik(fm1))),
  loglik_ml = c(as.numeric(logLik(refitML(fm0))), as.numeric(logLik(ml))),
  profile_names = rownames(ci_reml),
  profile_reml_fit = list(lower = unname(ci_reml[, 1]), upper = unname(ci_reml[, 2])),
  profile_ml_fit = list(lower = unname(ci_ml[, 1]), upper = unname(ci_ml[, 2])),
  estimates_reml = c(vc(fm1), fixef(fm1)), estimates_ml = c(vc(ml), fixef(ml)))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
