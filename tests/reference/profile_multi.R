# Profile-likelihood confidence intervals from lme4 for fits with several grouping factors.
# Usage: Rscript profile_multi.R OUT.json SIMCSV [CASE ...]
# For each case (default: all):
#   confint(fit, method = "profile", level = 0.95, oldNames = FALSE)
# with fit = lmer(...) (REML as stated: lme4 1.1-31 profiles REML fits on the ML
# likelihood, devfun2() calls refitML()) or glmer(..., nAGQ = 1) (Laplace).
# SIMCSV is written first: a simulated crossed design with a correlated random
# intercept and two slopes on g (three correlations) and a random intercept on h,
#   y = 1 + 0.5 x - 0.3 z + b0_g + b1_g x + b2_g z + c_h + e,
#   sd(b) = (1, 0.6, 0.8), cor(b0,b1) = 0.4, cor(b0,b2) = -0.3, cor(b1,b2) = 0.2,
#   sd(c) = 0.7, sd(e) = 1; x ~ N(0, 1), z ~ U(-2, 2); 40 levels of g x 12 rows,
#   h with 12 levels crossed.
# OUT.json is rewritten after each case; cases already in it are kept.
suppressMessages({library(lme4); library(mlmRev); library(jsonlite); library(MASS)})
args <- commandArgs(TRUE); out <- args[1]; simcsv <- args[2]; only <- args[-(1:2)]
set.seed(20240611)
G <- 40; n <- 12; H <- 12
S <- diag(c(1, 0.6, 0.8)) %*% matrix(c(1, 0.4, -0.3, 0.4, 1, 0.2, -0.3, 0.2, 1), 3) %*% diag(c(1, 0.6, 0.8))
b <- mvrnorm(G, rep(0, 3), S); ch <- rnorm(H, 0, 0.7)
sim <- data.frame(g = rep(seq_len(G), each = n), h = sample(seq_len(H), G * n, replace = TRUE),
                  x = round(rnorm(G * n), 4), z = round(runif(G * n, -2, 2), 4))
sim$y <- round(with(sim, 1 + 0.5 * x - 0.3 * z + b[g, 1] + b[g, 2] * x + b[g, 3] * z + ch[h] +
                       rnorm(G * n)), 4)
write.csv(sim, simcsv, row.names = FALSE)
sim <- read.csv(simcsv); sim$g <- factor(sim$g); sim$h <- factor(sim$h)
data(Pastes); data(Penicillin); data(sleepstudy); data(grouseticks); data(VerbAgg); data(Chem97)
grouse <- grouseticks; grouse$cHEIGHT <- grouse$HEIGHT - mean(grouse$HEIGHT)
cases <- list(
  list(id = "pastes_nested", fit = function() lmer(strength ~ 1 + (1 | batch/cask), Pastes)),
  list(id = "penicillin_crossed", fit = function() lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)),
  list(id = "sleepstudy_uncorrelated", fit = function() lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy, REML = FALSE)),
  list(id = "sim_slopes_crossed", fit = function() lmer(y ~ x + z + (1 + x + z | g) + (1 | h), sim, REML = FALSE)),
  list(id = "chem97_nested", fit = function() lmer(score ~ gcsecnt + (1 | school) + (1 | lea), Chem97, REML = FALSE), parm = "theta_"),
  list(id = "grouse_nested", fit = function() glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), grouse, poisson)),
  list(id = "verbagg_crossed", fit = function() glmer(r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item), VerbAgg, binomial), parm = "theta_")
)
res <- if (file.exists(out)) fromJSON(out, simplifyVector = FALSE) else list()
for (cs in cases) {
  if (length(only) && !(cs$id %in% only)) next
  m <- cs$fit()
  parm <- if (is.null(cs$parm)) NULL else cs$parm
  t <- system.time(ci <- if (is.null(parm)) confint(m, method = "profile", level = 0.95, oldNames = FALSE)
                         else confint(m, parm = parm, method = "profile", level = 0.95, oldNames = FALSE))[["elapsed"]]
  res[[cs$id]] <- list(call = deparse(body(cs$fit), width.cutoff = 500L), parm = parm,
                       seconds = t, loglik = as.numeric(logLik(m)), reml = isREML(m),
                       lme4 = as.character(packageVersion("lme4")),
                       names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2]))
  cat(cs$id, "done", t, "s\n")
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
}
