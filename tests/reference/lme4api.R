# lme4's accessors and predictions for tests/test_lme4api.py and tests/test_prediction.py.
# Usage: Rscript lme4api.R DATADIR OUT.json   (DATADIR = mlglm/datasets; lme4 1.1-31 here)
#   cbpp: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial), Laplace
#   hsb:  lmer(mAch ~ cses + (1 + cses | school)), REML
# For each: fixef, ranef with condVar SDs (sqrt of the diagonal of attr(, "postVar")),
# coef, VarCorr (SDs, correlation, sigma), isSingular, and predict() on new data with a
# seen and an unseen group: conditional (re.form = NULL, allow.new.levels = TRUE) and
# population level (re.form = NA), type = "response".
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
rd <- function(n, g) read.csv(file.path(args[1], paste0(n, ".csv")), stringsAsFactors = TRUE,
                              colClasses = setNames("character", g))
ranef_out <- function(m, g, keep = NULL) {
  re <- ranef(m, condVar = TRUE)[[g]]
  pv <- attr(re, "postVar")
  sd <- t(apply(pv, 3, function(v) sqrt(diag(as.matrix(v)))))
  if (ncol(re) == 1) sd <- t(sd)
  sd <- as.data.frame(matrix(sd, nrow = nrow(re), dimnames = list(rownames(re), colnames(re))))
  cf <- coef(m)[[g]]
  if (!is.null(keep)) { re <- re[keep, , drop = FALSE]; sd <- sd[keep, , drop = FALSE]; cf <- cf[keep, , drop = FALSE] }
  list(modes = lapply(split(re, rownames(re)), as.list),
       cond_sd = lapply(split(sd, rownames(sd)), as.list),
       coef = lapply(split(cf, rownames(cf)), as.list))
}
out <- list()

d <- rd("cbpp", "herd"); d$herd <- factor(d$herd); d$period <- factor(d$period)
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), d, binomial)
new <- data.frame(herd = c("1", "5", "99"), period = factor(c("1", "3", "2"), levels = levels(d$period)))
vc <- as.data.frame(VarCorr(m))
out$cbpp <- c(list(fixef = as.list(fixef(m)), sdcor = vc$sdcor, singular = isSingular(m),
                   new_herd = new$herd, new_period = as.character(new$period),
                   predict_conditional = unname(predict(m, new, type = "response", allow.new.levels = TRUE)),
                   predict_population = unname(predict(m, new, type = "response", re.form = NA))),
              ranef_out(m, "herd"))

h <- rd("hsb", "school"); h$school <- factor(h$school)
m <- lmer(mAch ~ cses + (1 + cses | school), h, REML = TRUE)
new <- data.frame(school = c("1224", "9999", "8367"), cses = c(0.5, -1, 1.25))
vc <- as.data.frame(VarCorr(m))
out$hsb <- c(list(fixef = as.list(fixef(m)), vc_grp = vc$grp, vc_var1 = vc$var1,
                  vc_var2 = vc$var2, vc_vcov = vc$vcov, vc_sdcor = vc$sdcor,
                  singular = isSingular(m), new_school = new$school, new_cses = new$cses,
                  predict_conditional = unname(predict(m, new, allow.new.levels = TRUE)),
                  predict_population = unname(predict(m, new, re.form = NA)),
                  varcorr_print = capture.output(print(VarCorr(m), comp = "Std.Dev."))),
             ranef_out(m, "school", keep = c("1224", "1288", "2208", "8367", "9586")))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), args[2])
