# glmmTMB timings for benchmarks/zi_speed.py (issue 23): zero-inflated, hurdle and beta GLMMs.
# Usage: Rscript zi_speed.R CASES.json OUT.json REPS
# CASES.json (written by zi_speed.py): a list of cases, each {name, csv, formula, ziformula,
# family ("zipoisson", "zinb2", "hurdle_nb2", "beta"), reps}. Per case: elapsed seconds of
# the glmmTMB() call (formula handling included, data already read), median and min over
# its reps, with one thread (glmmTMBControl(parallel = 1)), and the fit's logLik, fixed
# effects of both parts, dispersion and convergence code.
suppressMessages({library(glmmTMB); library(jsonlite)})
a <- commandArgs(TRUE); cases <- fromJSON(a[1], simplifyVector = FALSE); out <- a[2]
reps <- as.integer(a[3])
fam <- list(zipoisson = poisson(), zinb2 = nbinom2(), hurdle_nb2 = truncated_nbinom2(),
            beta = beta_family())
res <- list()
for (cs in cases) {
  d <- read.csv(cs$csv)
  for (col in intersect(c("site", "g"), names(d))) d[[col]] <- as.character(d[[col]])
  k <- if (is.null(cs$reps)) reps else as.integer(cs$reps)
  ts <- numeric(k)
  for (i in seq_len(k)) {
    ts[i] <- system.time(m <- glmmTMB(as.formula(cs$formula), data = d,
                                      ziformula = as.formula(cs$ziformula),
                                      family = fam[[cs$family]],
                                      control = glmmTMBControl(parallel = 1)))[["elapsed"]]
  }
  fe <- fixef(m)
  res[[cs$name]] <- list(median = median(ts), min = min(ts), times = ts,
                         loglik = as.numeric(logLik(m)), convergence = m$fit$convergence,
                         fixef_cond = as.list(fe$cond), fixef_zi = as.list(fe$zi),
                         dispersion = tryCatch(as.numeric(sigma(m)), error = function(e) NA))
  cat(cs$name, "done\n")
}
write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
