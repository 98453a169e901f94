#!/usr/bin/env Rscript
# Cross-check of surveil_simulate against R `surveillance` on one replicate:
# runs the same eight detector configurations in R on the series that
#   surveil_simulate --dump I:1
# prints, and prints the cells surveil_simulate's per-scenario table shows
# for `--scenario I --reps 1` (FPR % / POD % at k = 3 / POD % at k = 5).
#
#   build/surveil_simulate --dump 6:1 > /tmp/s6.csv
#   Rscript bench/surveil/sim/check-r.R /tmp/s6.csv [ALPHA]
#   build/surveil_simulate --scenario 6 --reps 1
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
alpha <- if (length(args) > 1) as.numeric(args[2]) else 0.005
eval <- 576:624
mk <- function(x) sts(observed = matrix(as.double(x), ncol = 1), freq = 52, start = c(2000, 1))
far <- function(ctl) function(x) {
  r <- suppressWarnings(farringtonFlexible(mk(x), control = c(list(range = eval, glmWarnings = FALSE), ctl)))
  as.vector(alarms(r))
}
methods <- list(
  C1 = function(x) as.vector(alarms(earsC(mk(x), control = list(method = "C1", range = eval)))),
  C2 = function(x) as.vector(alarms(earsC(mk(x), control = list(method = "C2", range = eval)))),
  C3 = function(x) as.vector(alarms(earsC(mk(x), control = list(method = "C3", range = eval)))),
  # the year before the evaluation estimates m
  CUSUM = function(x) as.vector(alarms(cusum(mk(x[524:624]), control = list(range = 53:101)))),
  `F-dflt` = far(list()),
  `F-1996` = far(list(b = 5, w = 3, noPeriods = 1, pastWeeksNotIncluded = 3, weightsThreshold = 1,
                      pThresholdTrend = 0.05, thresholdMethod = "delta", alpha = alpha)),
  `N-nb` = far(list(b = 5, w = 3, noPeriods = 10, pastWeeksNotIncluded = 26, weightsThreshold = 2.58,
                    pThresholdTrend = 1, thresholdMethod = "nbPlugin", alpha = alpha)),
  `N-muan` = far(list(b = 5, w = 3, noPeriods = 10, pastWeeksNotIncluded = 26, weightsThreshold = 2.58,
                      pThresholdTrend = 1, thresholdMethod = "muan", alpha = alpha))
)
past <- d$past[eval] == 1
for (m in names(methods)) {
  f <- methods[[m]]
  a0 <- f(d$none); a0 <- !is.na(a0) & a0 == 1
  fpr <- 100 * sum(a0[!past]) / sum(!past)
  pod <- sapply(c("3", "5"), function(k) {
    ob <- d[[paste0("ob", k)]][eval] > 0
    if (!any(ob)) return(NA)
    a <- f(d[[paste0("k", k)]]); a <- !is.na(a) & a == 1
    100 * any(a[ob])
  })
  cat(sprintf("%-7s %.1f / %.0f / %.0f\n", m, fpr, pod[1], pod[2]))
}
