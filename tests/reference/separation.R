# lme4 on the separated binomial data of issue 21 item 1 (tests/hard_data.py,
# separated_binomial(seed): 1,200 rows, 30 groups, level "c" of f has y = 0 throughout), for
# the seeds the tests use. Two covariances per fit: vcov(m) (lme4's default for glmer, from
# its finite-difference Hessian) and vcov(m, use.hessian = FALSE) (the fixed-effect block
# of the penalised least-squares fit, lme4's fallback). On seed 0 lme4's Hessian fails
# (every SE 0.0033, f[T.c] at -63308); on seed 8 both agree.
# Usage:  python tests/hard_data.py OUTDIR   (writes OUTDIR/separated_binomial_seed{0,8}.csv)
#         Rscript tests/reference/separation.R OUTDIR tests/reference/separation.json
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE)
fit <- function(seed) {
  d <- read.csv(file.path(args[1], sprintf("separated_binomial_seed%d.csv", seed)))
  d$f <- factor(d$f, levels = c("a", "b", "c")); d$g <- factor(d$g)
  m <- glmer(y ~ x + f + (1 | g), data = d, family = binomial)
  list(call = "glmer(y ~ x + f + (1 | g), data = d, family = binomial)",
       loglik = as.numeric(logLik(m)), fixef = as.list(fixef(m)),
       se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       se_rx = as.list(sqrt(diag(as.matrix(vcov(m, use.hessian = FALSE))))),
       sd = unname(attr(VarCorr(m)$g, "stddev")),
       messages = m@optinfo$conv$lme4$messages)
}
out <- list(about = paste("lme4", packageVersion("lme4"), "(R", getRversion(), ") on",
                          "tests/hard_data.py separated_binomial(seed)"),
            seed0 = suppressWarnings(fit(0L)), seed8 = suppressWarnings(fit(8L)))
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), args[2])
