# Reference fits for the negative binomial and Gamma families and for prior weights
# (issue 14): glmmTMB 1.1.5 (true ML: theta / the Gamma shape estimated jointly, Laplace)
# and lme4 1.1-31 (glmer.nb alternates theta and the rest; lmer with weights=).
# Usage: Rscript references_families.R OUTDIR   (writes families_open.json and epil.csv)
# Data: lme4::grouseticks (cHEIGHT = HEIGHT - mean(HEIGHT), cH = cHEIGHT / 100), MASS::epil,
# lme4::sleepstudy (R100 = Reaction / 100).
# Weights, where a case has them, are w_i = c(0.5, 1, 2)[(i - 1) %% 3 + 1] (var_weights)
# or c(1, 2, 3)[(i - 1) %% 3 + 1] (frequency weights), i the row number in the data.
suppressMessages({library(lme4); library(glmmTMB); library(MASS); library(jsonlite)})
args <- commandArgs(TRUE); out <- args[1]
dir.create(out, showWarnings = FALSE, recursive = TRUE)
timed <- function(expr) { t <- system.time(v <- eval.parent(substitute(expr)))[["elapsed"]]; list(v = v, t = t) }
vc_list <- function(vcs) lapply(names(vcs), function(n) {
  v <- vcs[[n]]
  list(grp = n, names = colnames(v), sd = unname(attr(v, "stddev")),
       cor = if (ncol(v) > 1) unname(attr(v, "correlation")[lower.tri(attr(v, "correlation"))]) else list())
})
tmb_info <- function(f, secs) {
  fam <- family(f)$family
  list(engine = "glmmTMB", seconds = secs, loglik = as.numeric(logLik(f)),
       fixef = as.list(fixef(f)$cond), se = as.list(sqrt(diag(vcov(f)$cond))),
       varcorr = vc_list(VarCorr(f)$cond), sigma = sigma(f), betad = unname(f$fit$par["betad"]),
       betad_se = unname(sqrt(diag(f$sdr$cov.fixed))[names(f$sdr$par.fixed) == "betad"]),
       family = fam, convergence = f$fit$convergence, pdHess = f$sdr$pdHess)
}
lme4_info <- function(f, secs) {
  out <- list(engine = "lme4", seconds = secs, loglik = as.numeric(logLik(f)),
              fixef = as.list(fixef(f)), se = as.list(sqrt(diag(as.matrix(vcov(f))))),
              varcorr = vc_list(VarCorr(f)), messages = f@optinfo$conv$lme4$messages)
  if (isLMM(f)) { out$sigma <- sigma(f); out$reml <- isREML(f) }
  if (!is.null(getME(f, "glmer.nb.theta"))) out$theta <- getME(f, "glmer.nb.theta")
  out
}
cases <- list()
add <- function(name, data, formula, family, fits, csv, weights = NULL) {
  message("case ", name)
  cases[[name]] <<- list(formula = deparse(formula, width.cutoff = 500L), family = family,
                         data = csv, nobs = nrow(data), weights = weights, fits = fits)
}
g <- grouseticks; g$cHEIGHT <- g$HEIGHT - mean(g$HEIGHT)
ep <- epil; ep$subject <- factor(ep$subject)
write.csv(epil, file.path(out, "epil.csv"), row.names = FALSE)
ss <- sleepstudy
w3 <- c(0.5, 1, 2)[(seq_len(nrow(ss)) - 1) %% 3 + 1]
f3 <- c(1, 2, 3)[(seq_len(nrow(ep)) - 1) %% 3 + 1]

# negative binomial (NB2: Var = mu + mu^2 / theta)
fm <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)
a <- timed(glmmTMB(fm, g, family = nbinom2)); b <- timed(glmer.nb(fm, g))
add("grouse_nb2_crossed", g, fm, "nbinom2", list(tmb_info(a$v, a$t), lme4_info(b$v, b$t)), "grouseticks")
fm <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD)
a <- timed(glmmTMB(fm, g, family = nbinom2)); b <- timed(glmer.nb(fm, g))
add("grouse_nb2_brood", g, fm, "nbinom2", list(tmb_info(a$v, a$t), lme4_info(b$v, b$t)), "grouseticks")
fm <- y ~ lbase * trt + lage + V4 + (1 | subject)
a <- timed(glmmTMB(fm, ep, family = nbinom2)); b <- timed(glmer.nb(fm, ep))
add("epil_nb2", ep, fm, "nbinom2", list(tmb_info(a$v, a$t), lme4_info(b$v, b$t)), "epil")
g$cH <- g$cHEIGHT / 100
fm <- TICKS ~ YEAR + cH + (1 + cH | LOCATION)
a <- timed(glmmTMB(fm, g, family = nbinom2))
add("grouse_nb2_slope", g, fm, "nbinom2", list(tmb_info(a$v, a$t)), "grouseticks")
fm <- y ~ lbase * trt + lage + V4 + (1 | subject)
a <- timed(glmmTMB(fm, ep, family = nbinom2, weights = f3))
add("epil_nb2_weights", ep, fm, "nbinom2", list(tmb_info(a$v, a$t)), "epil", "c(1, 2, 3) frequency")
a <- timed(glmmTMB(fm, ep, family = poisson)); b <- timed(glmer(fm, ep, family = poisson))
add("epil_poisson", ep, fm, "poisson", list(tmb_info(a$v, a$t), lme4_info(b$v, b$t)), "epil")

# Gamma (Var = phi mu^2, phi = 1 / shape = sigma(glmmTMB)^2)
fm <- Reaction ~ Days + (1 | Subject)
a <- timed(glmmTMB(fm, ss, family = Gamma(link = "log")))
add("sleep_gamma_log", ss, fm, "Gamma(log)", list(tmb_info(a$v, a$t)), "sleepstudy")
fm <- Reaction ~ Days + (Days | Subject)
a <- timed(glmmTMB(fm, ss, family = Gamma(link = "log")))
add("sleep_gamma_log_slope", ss, fm, "Gamma(log)", list(tmb_info(a$v, a$t)), "sleepstudy")
ss$R100 <- ss$Reaction / 100      # mean ~3: the inverse link's eta ~0.3 (glmmTMB fails on eta ~0.003)
fm <- R100 ~ Days + (1 | Subject)
a <- timed(glmmTMB(fm, ss, family = Gamma(link = "inverse")))
add("sleep_gamma_inverse", ss, fm, "Gamma(inverse)", list(tmb_info(a$v, a$t)), "sleepstudy")

# prior weights in the Gaussian LMM: lmer's weights= (Var(e_i) = sigma^2 / w_i)
fm <- Reaction ~ Days + (Days | Subject)
a <- timed(lmer(fm, ss, weights = w3)); b <- timed(lmer(fm, ss, weights = w3, REML = FALSE))
add("sleep_lmer_weights_reml", ss, fm, "gaussian", list(lme4_info(a$v, a$t)), "sleepstudy", "c(0.5, 1, 2) var")
add("sleep_lmer_weights_ml", ss, fm, "gaussian", list(lme4_info(b$v, b$t)), "sleepstudy", "c(0.5, 1, 2) var")
pen <- Penicillin
wp <- c(0.5, 1, 2)[(seq_len(nrow(pen)) - 1) %% 3 + 1]
fm <- diameter ~ 1 + (1 | plate) + (1 | sample)
a <- timed(lmer(fm, pen, weights = wp))
add("penicillin_lmer_weights_reml", pen, fm, "gaussian", list(lme4_info(a$v, a$t)), "penicillin", "c(0.5, 1, 2) var")
cases[["_about"]] <- list(made_by = paste0("tests/reference/references_families.R (glmmTMB ",
  as.character(packageVersion("glmmTMB")), ", lme4 ", as.character(packageVersion("lme4")), ", ",
  R.version.string, "); seconds are single runs on a shared 2-core machine"))
write_json(cases, file.path(out, "families_open.json"), auto_unbox = TRUE, digits = NA, pretty = TRUE)
message("done")
