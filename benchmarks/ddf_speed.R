# lmerTest / pbkrtest timings for benchmarks/ddf_speed.py (issue 24).
# Usage: Rscript ddf_speed.R DATADIR OUT.json REPS
# Times, per case, with system.time (elapsed seconds; median over REPS where it is cheap):
#   fit        lme4::lmer (REML)
#   satt       lmerTest's derivatives: as_lmerModLmerTest(fit) (numDeriv Hessian of the
#              deviance and Jacobian of vcov in (theta, sigma); lmerTest::lmer does this
#              at fit time) followed by summary() (Satterthwaite df for every coefficient)
#   kr         summary(fit, ddf = "Kenward-Roger") (pbkrtest::vcovAdj with n x n matrices,
#              then Lb_ddf per coefficient); only where n <= 10,000 (the dense n x n
#              matrices of 10^5 rows would need about 80 GB)
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
a <- commandArgs(TRUE); ddir <- a[1]; out <- a[2]; reps <- as.integer(a[3])

tm <- function(f, k) {
  ts <- vapply(seq_len(k), function(i) system.time(f())[["elapsed"]], numeric(1))
  c(median = median(ts), min = min(ts))
}
cases <- list(
  hsb_full = list(csv = "hsb.csv", f = "mAch ~ meanses * cses + sector * cses + (1 + cses | school)"),
  one_1e5 = list(csv = "one_1e5.csv", f = "y ~ x1 + x2 + (1 + x1 | g)"),
  nested_1e5 = list(csv = "nested_1e5.csv", f = "y ~ x + (1 + x | school) + (1 | school:class)"),
  crossed_1e5 = list(csv = "crossed_1e5.csv", f = "y ~ x + (1 | subject) + (1 | item)"))
res <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  d <- read.csv(file.path(ddir, cs$csv))
  n <- nrow(d)
  k <- if (n > 20000) 1L else reps
  r <- list(n = n)
  r$fit <- tm(function() m <<- lme4::lmer(as.formula(cs$f), d, REML = TRUE), k)
  r$satt <- tm(function() {mt <<- lmerTest::as_lmerModLmerTest(m); summary(mt)}, k)
  r$satt_df <- as.list(summary(mt)$coefficients[, "df"])
  if (n <= 10000) {
    r$kr <- tm(function() sk <<- summary(mt, ddf = "Kenward-Roger"), 1L)
    r$kr_df <- as.list(sk$coefficients[, "df"])
  }
  res[[nm]] <- r
  cat(nm, "done\n")
}
write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
