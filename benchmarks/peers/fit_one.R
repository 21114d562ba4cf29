# One timed fit of one case by lme4 or glmmTMB; prints "@@RESULT@@ {json}" on stdout.
# Usage: Rscript --vanilla benchmarks/peers/fit_one.R ENGINE SPEC.json
# Timed: the glmer()/lmer()/glmmTMB() call only (formula handling included; reading and
# preparing the CSV excluded).  Peak RSS of the fit: VmHWM after resetting it via
# /proc/self/clear_refs just before the call.
suppressMessages(library(jsonlite))
args <- commandArgs(TRUE)
engine <- args[1]
spec <- fromJSON(args[2])

status_kb <- function(key) {
  s <- tryCatch(readLines("/proc/self/status"), error = function(e) character())
  l <- grep(paste0("^", key, ":"), s, value = TRUE)
  if (length(l)) as.numeric(gsub("[^0-9]", "", l[1])) else NA_real_
}
emit <- function(x) cat("@@RESULT@@", toJSON(x, auto_unbox = TRUE, digits = NA, na = "null"), "\n")

out <- list(engine = engine, case = spec$id, ok = FALSE, notes = list())
res <- tryCatch({
  t_load <- proc.time()[["elapsed"]]
  d <- read.csv(spec$csv, stringsAsFactors = FALSE,
                colClasses = setNames(rep("character", length(spec$categorical)), spec$categorical))
  ds <- spec$dataset
  if (ds == "contraception") {
    d$y <- as.integer(d$use == "Y")
    d$livch <- factor(d$livch, levels = c("0", "1", "2", "3+"))
    d$urban <- factor(d$urban, levels = c("N", "Y"))
    d$district <- factor(d$district)
  } else if (ds == "cbpp") {
    d$herd <- factor(d$herd); d$period <- factor(d$period, levels = c("1", "2", "3", "4"))
  } else if (ds == "grouseticks") {
    d$BROOD <- factor(d$BROOD); d$YEAR <- factor(d$YEAR, levels = c("95", "96", "97"))
  } else if (ds == "hsb") {
    d$school <- factor(d$school)
  } else if (length(spec$factors) || length(spec$categorical)) {
    for (f in unique(c(spec$factors, spec$categorical))) d[[f]] <- factor(d[[f]])
    if (ds == "verbagg") d$y <- as.integer(d$r2 == "Y")
    if (ds == "grouseticks") d$YEAR <- factor(d$YEAR, levels = c("95", "96", "97"))
  } else {
    d$g <- factor(d$g)
  }
  out$load_seconds <- proc.time()[["elapsed"]] - t_load
  out$fingerprint <- list(nrows = nrow(d), ysum = sum(as.numeric(d[[spec$response]])))
  if (!is.null(d$x1)) out$fingerprint$x1sum <- round(sum(d$x1), 6)
  suppressMessages({library(lme4); if (engine == "glmmTMB") library(glmmTMB)})
  f <- as.formula(spec$formula)
  fam <- switch(spec$family, binomial = binomial(), poisson = poisson(), gaussian = gaussian(),
                negative_binomial = "nbinom2")
  conds <- character()
  fitfun <- function() {
    if (engine == "lme4") {
      if (spec$kind == "lmm") lmer(f, data = d, REML = spec$reml)
      else if (identical(fam, "nbinom2")) glmer.nb(f, data = d, nAGQ = spec$nagq)
      else glmer(f, data = d, family = fam, nAGQ = spec$nagq)
    } else {
      if (spec$kind == "lmm") glmmTMB(f, data = d, family = gaussian(), REML = spec$reml)
      else glmmTMB(f, data = d, family = if (identical(fam, "nbinom2")) nbinom2 else fam,
                   control = glmmTMBControl(parallel = 1))
    }
  }
  gc()
  invisible(tryCatch(writeLines("5", "/proc/self/clear_refs"), error = function(e) NULL))
  out$rss_base_mb <- status_kb("VmRSS") / 1024
  t0 <- proc.time()
  m <- withCallingHandlers(fitfun(),
    warning = function(w) { conds <<- c(conds, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(w) { conds <<- c(conds, trimws(conditionMessage(w))); invokeRestart("muffleMessage") })
  t1 <- proc.time()
  out$fit_seconds <- t1[["elapsed"]] - t0[["elapsed"]]
  out$fit_cpu_seconds <- (t1[["user.self"]] - t0[["user.self"]]) + (t1[["sys.self"]] - t0[["sys.self"]])
  out$rss_fit_peak_mb <- status_kb("VmHWM") / 1024
  out$llf <- as.numeric(logLik(m))
  if (engine == "lme4") {
    out$fe_params <- as.list(fixef(m))
    out$cov_re <- unname(as.matrix(VarCorr(m)[[1]]))
    msgs <- m@optinfo$conv$lme4$messages
    out$converged <- (m@optinfo$conv$opt == 0) && length(msgs) == 0
    conds <- c(conds, msgs)
    if (spec$nagq > 1 && (spec$family == "poisson" || isTRUE(spec$trials)))
      conds <- c(conds, "lme4 nAGQ>1 logLik omits normalising constants (lme4#567): llf not comparable")
  } else {
    out$fe_params <- as.list(fixef(m)$cond)
    out$cov_re <- unname(as.matrix(VarCorr(m)$cond[[1]]))
    out$converged <- (m$fit$convergence == 0) && isTRUE(m$sdr$pdHess)
    if (!isTRUE(m$sdr$pdHess)) conds <- c(conds, "glmmTMB: non-positive-definite Hessian")
    if (is.na(out$llf)) {
      # glmmTMB sets logLik() to NA when the Hessian is not positive definite; the objective
      # at the point where the optimiser stopped is still a log-likelihood value.
      out$llf <- -m$fit$objective
      conds <- c(conds, "glmmTMB logLik() is NA (non-PD Hessian); llf = -fit$objective")
    }
  }
  if (is.na(out$llf)) out$llf <- NULL
  if (identical(fam, "nbinom2"))            # NB theta (glmer.nb: alternating; glmmTMB: ML)
    out$dispersion <- if (engine == "lme4") getME(m, "glmer.nb.theta") else sigma(m)
  out$notes <- as.list(unique(conds))
  out$ok <- TRUE
  out
}, error = function(e) { out$error <- conditionMessage(e); out })
res$maxrss_mb <- status_kb("VmHWM") / 1024
res$version <- if (engine == "lme4") as.character(packageVersion("lme4")) else as.character(packageVersion("glmmTMB"))
emit(res)
