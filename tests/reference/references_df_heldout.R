# Held-out small-sample inference references (issue 24): lmerTest 3.1-3 (Satterthwaite),
# pbkrtest 0.5.2 (Kenward-Roger) on designs beside the open ones of references_df.R.
#   -> lmm_df_heldout.json, and the data it needs as CSV beside it (written here).
# Usage (from tests/reference/): Rscript references_df_heldout.R
#
# Cases (every fit by lmerTest::lmer):
#   oats_splitplot  MASS::oats, Y ~ N * V + (1 | B/V), REML: the split plot (N 4 levels
#                   within plots, V 3 levels on whole plots); types I, II, III
#   oats_nitro      nlme::Oats, yield ~ nitro * Variety + (1 | Block/Variety): a numeric
#                   split-plot factor crossed with the whole-plot factor (type III averages
#                   the nitro slope over varieties)
#   nested_sim      simulated: 8 districts, 3-7 schools each, 4-15 pupils each (unbalanced),
#                   y ~ x + type + (1 + x | district) + (1 | district:school)
#   slope_sim       simulated: 10 groups of 4-25 rows, y ~ x * trt + (1 + x | g), trt a
#                   between-group factor; also fitted by ML, and with variance weights w
#                   (Satterthwaite only)
#   penicillin      lme4::Penicillin, diameter ~ 1 + (1 | plate) + (1 | sample): crossed
#   sleep_diag      lme4::sleepstudy, Reaction ~ Days + (Days || Subject): uncorrelated
#   sleep_ml        lme4::sleepstudy, Reaction ~ Days + (Days | Subject), ML (Satterthwaite)
#   singular_corr   df_singular.csv, made once with numpy and committed: rng =
#                   default_rng(5); g = repeat(arange(8), 10); x = rng.normal(size=80);
#                   y = 1 + 0.5 x + rng.normal(size=80); h = tile(arange(10), 8) (no group
#                   effects):
#                   y ~ x + (1 + x | g), a correlation at +1 (boundary)
#   singular_crossed  the same data, y ~ x + (1 | g) + (1 | h), the h variance at 0
# and, for the open cases of references_df.R, lme4's theta and sigma (to evaluate the
# derivatives at lme4's own estimates).
suppressMessages({library(lme4); library(lmerTest); library(pbkrtest); library(jsonlite)})
out <- "lmm_df_heldout.json"

tab <- function(x) setNames(lapply(seq_len(nrow(x)), function(i)
  as.list(setNames(as.numeric(x[i, ]), colnames(x)))), rownames(x))

one <- function(f, d, csv, reml = TRUE, kr = reml, types = 3) {
  if (!is.null(csv) && !file.exists(csv)) write.csv(d, csv, row.names = FALSE)
  m <- lmerTest::lmer(as.formula(f), d, REML = reml)
  r <- list(formula = f, data = csv, reml = reml, loglik = as.numeric(logLik(m)),
            theta = as.numeric(getME(m, "theta")), sigma = sigma(m),
            satterthwaite = tab(summary(m, ddf = "Satterthwaite")$coefficients))
  for (ty in types)
    r[[paste0("anova", ty, "_satterthwaite")]] <- tab(anova(m, type = ty, ddf = "Satterthwaite"))
  if (kr) {
    r$kenward_roger <- tab(summary(m, ddf = "Kenward-Roger")$coefficients)
    for (ty in types)
      r[[paste0("anova", ty, "_kenward_roger")]] <- tab(anova(m, type = ty, ddf = "Kenward-Roger"))
  }
  r
}

res <- list()
data(oats, package = "MASS")
o <- data.frame(B = as.character(oats$B), V = as.character(oats$V), N = as.character(oats$N),
                Y = oats$Y)
res$oats_splitplot <- one("Y ~ N * V + (1 | B/V)", o, "oats_mass.csv", types = 1:3)

data(Oats, package = "nlme")
O <- data.frame(Block = as.character(Oats$Block), Variety = as.character(Oats$Variety),
                nitro = Oats$nitro, yield = Oats$yield)
res$oats_nitro <- one("yield ~ nitro * Variety + (1 | Block/Variety)", O, "oats_nlme.csv",
                      types = 2:3)

set.seed(2024)
nd <- do.call(rbind, lapply(1:8, function(d) {
  ns <- sample(3:7, 1); ud <- rnorm(1, 0, 1.0); sd_ <- rnorm(1, 0, 0.3)
  do.call(rbind, lapply(1:ns, function(s) {
    np <- sample(4:15, 1); us <- rnorm(1, 0, 0.7)
    type <- sample(c("public", "private", "charter"), 1)
    x <- rnorm(np)
    data.frame(district = paste0("d", d), school = paste0("s", s), type = type, x = x,
               y = 10 + 0.5 * x + (type == "private") * 0.8 + ud + us + sd_ * x + rnorm(np))
  }))
}))
res$nested_sim <- one("y ~ x + type + (1 + x | district) + (1 | district:school)", nd,
                      "df_nested_sim.csv", types = 3)

set.seed(7)
sizes <- c(4, 6, 7, 9, 11, 13, 15, 18, 21, 25)
sl <- do.call(rbind, lapply(seq_along(sizes), function(g) {
  n <- sizes[g]; x <- runif(n, 0, 10); trt <- if (g %% 2) "A" else "B"
  data.frame(g = paste0("g", g), trt = trt, x = x,
             y = 5 + 0.3 * x + (trt == "B") * 1.5 + rnorm(1, 0, 1.2) +
               rnorm(1, 0, 0.15) * x + rnorm(n, 0, 1))
}))
sl$w <- round(runif(nrow(sl), 0.5, 2), 3)          # variance weights for slope_sim_w
res$slope_sim <- one("y ~ x * trt + (1 + x | g)", sl, "df_slope_sim.csv", types = 3)
res$slope_sim_ml <- one("y ~ x * trt + (1 + x | g)", sl, NULL, reml = FALSE, types = 3)
# lmer's weights= (Var e_i = sigma^2 / w_i); Satterthwaite only: pbkrtest's Kenward-Roger
# takes the residual covariance as sigma^2 I and ignores prior weights
mw <- function(f, d) {
  m <- lmerTest::lmer(as.formula(f), d, weights = w)
  list(formula = f, data = "df_slope_sim.csv", reml = TRUE, weights = "w",
       loglik = as.numeric(logLik(m)), theta = as.numeric(getME(m, "theta")),
       sigma = sigma(m), satterthwaite = tab(summary(m)$coefficients),
       anova3_satterthwaite = tab(anova(m, type = 3)))
}
res$slope_sim_w <- mw("y ~ x * trt + (1 + x | g)", sl)

data(Penicillin, package = "lme4")
res$penicillin <- one("diameter ~ 1 + (1 | plate) + (1 | sample)", Penicillin, NULL,
                      types = integer(0))
data(sleepstudy, package = "lme4")
res$sleep_diag <- one("Reaction ~ Days + (Days || Subject)", sleepstudy, NULL, types = 3)
res$sleep_ml <- one("Reaction ~ Days + (Days | Subject)", sleepstudy, NULL, reml = FALSE,
                    types = 3)

sg <- read.csv("df_singular.csv")
res$singular_corr <- one("y ~ x + (1 + x | g)", sg, "df_singular.csv", types = integer(0))
res$singular_crossed <- one("y ~ x + (1 | g) + (1 | h)", sg, "df_singular.csv",
                            types = integer(0))

# lme4's estimates for the open cases of references_df.R (same data, same calls)
data(Pastes, package = "lme4")
hsb <- read.csv("../../mlglm/datasets/hsb.csv")
hsb$sector <- as.character(hsb$sector)
h12 <- hsb[hsb$school %in% unique(hsb$school)[1:12], ]
est <- function(f, d) {
  m <- lmer(as.formula(f), d, REML = TRUE)
  list(theta = as.numeric(getME(m, "theta")), sigma = sigma(m),
       loglik = as.numeric(logLik(m)))
}
res$open_estimates <- list(
  sleepstudy_rs = est("Reaction ~ Days + (Days | Subject)", sleepstudy),
  pastes_nested = est("strength ~ 1 + (1 | batch/cask)", Pastes),
  hsb_full = est("mAch ~ meanses * cses + sector * cses + (1 + cses | school)", hsb),
  hsb12_rs = est("mAch ~ meanses + cses + (1 + cses | school)", h12))

write(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE), out)
cat("wrote", out, "\n")
