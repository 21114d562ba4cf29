# Zero-inflated GLMMs with several grouping factors, from glmmTMB (Laplace), for
# tests/test_zero_models.py. Usage: Rscript references_zi_multi.R OUT.json
suppressMessages({library(glmmTMB); library(jsonlite)})
out <- commandArgs(TRUE)[1]
data(Salamanders, package = "glmmTMB")
S <- Salamanders[, c("site", "mined", "cover", "sample", "DOP", "Wtemp", "DOY", "spp", "count")]
S$site <- as.character(S$site)
one <- function(f, zi, fam, famname) {
  m <- glmmTMB(as.formula(f), data = S, ziformula = as.formula(zi), family = fam)
  fe <- fixef(m)
  vc <- VarCorr(m)$cond
  list(formula = f, ziformula = zi, family = famname, data = "salamanders.csv",
       loglik = as.numeric(logLik(m)), converged = m$fit$convergence == 0,
       fixef_cond = as.list(fe$cond), fixef_zi = as.list(fe$zi),
       sd = lapply(vc, function(v) as.numeric(attr(v, "stddev"))),
       dispersion = tryCatch(as.numeric(sigma(m)), error = function(e) NA),
       se_cond = as.list(sqrt(diag(vcov(m)$cond))))
}
res <- list()
res$sal_zinb2_crossed <- one("count ~ mined + (1 | site) + (1 | spp)", "~ mined", nbinom2(),
                             "zinb2")
res$sal_zip_nested <- one("count ~ spp + mined + (1 | site) + (1 | site:sample)", "~ mined",
                          poisson(), "zipoisson")
write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
