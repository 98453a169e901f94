#!/usr/bin/env Rscript
# bench/surveil/r_side.R — the R half of surveil_bench (which calls it):
# the same detector configurations, in R package `surveillance`, on the same
# series, timed, with the results written for surveil_bench to compare.
#
#   Rscript bench/surveil/r_side.R DIR STRIDE FARRINGTON_STRIDE FARRINGTON_SERIES CHUNK
#
# Reads DIR/series.csv (a week column, then one column per series). Runs the
# EARS and CUSUM configurations on every STRIDE-th series (1: all) and the two
# Farrington ones on FARRINGTON_SERIES series, every FARRINGTON_STRIDE-th.
# Series are rebuilt as in scripts/surveil-golden.R: sts(observed, freq = 52,
# start = c(2000, 1)), integer time, no dates. They are handed to R in sts
# objects of CHUNK series each, built before the clock starts: surveillance's
# wrap.algo (which cusum() goes through) copies the whole result matrices for
# every series, so one sts of 10,000 series would make CUSUM quadratic (2.7 ms
# a series with 200 columns, 109 ms with 2,000); ~100 columns is R's best.
#
# Only the detector calls are timed (system.time, elapsed), after one untimed
# warm-up call per configuration. Written per
# configuration, in the layout surveil_bench writes its own:
#   r_<config>.series  int32: the 1-based series R ran, in order
#   r_<config>.ub      float64: upper bounds, series after series, the weeks evaluated
#   r_<config>.alarm   int32: alarms 0/1, NA_integer_ (INT_MIN) for NA
#   r_times.csv        config,series,seconds,first evaluated week (1-based)
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
stopifnot(length(args) == 5)
dir <- args[1]
stride <- as.integer(args[2])
far_stride <- as.integer(args[3])
far_series <- as.integer(args[4])
chunk <- as.integer(args[5])

file <- file.path(dir, "series.csv")
header <- strsplit(readLines(file, n = 1), ",")[[1]]
cells <- scan(file, what = double(), sep = ",", skip = 1, quiet = TRUE)
tab <- matrix(cells, ncol = length(header), byrow = TRUE)
obs <- tab[, -1, drop = FALSE] # drop the week column
n <- nrow(obs)
ns <- ncol(obs)

# name, subset, the R call (the same names and parameters as surveil_bench's table)
configs <- list(
  list("c1", "all", function(x) earsC(x, control = list(method = "C1"))),
  list("c2", "all", function(x) earsC(x, control = list(method = "C2"))),
  list("c3", "all", function(x) earsC(x, control = list(method = "C3"))),
  list("cusum", "all", function(x) cusum(x, control = list(range = 53:n), verbose = FALSE)),
  list("farrington", "far", function(x)
    suppressWarnings(farringtonFlexible(x, control = list(b = 4, glmWarnings = FALSE)))),
  list("noufaily", "far", function(x)
    suppressWarnings(farringtonFlexible(x, control = list(b = 4, noPeriods = 10, pastWeeksNotIncluded = 26,
                                                          weightsThreshold = 2.58, thresholdMethod = "nbPlugin",
                                                          glmWarnings = FALSE))))
)

subsets <- list(all = seq(1, ns, by = stride),
                far = head(seq(1, ns, by = far_stride), far_series))
# sts objects, CHUNK series each, built once per subset (not timed)
chunks <- lapply(subsets, function(ids) {
  lapply(split(ids, ceiling(seq_along(ids) / chunk)), function(j)
    sts(observed = obs[, j, drop = FALSE], freq = 52, start = c(2000, 1)))
})

times <- data.frame(config = character(0), series = integer(0), seconds = numeric(0), first = integer(0))
for (cf in configs) {
  name <- cf[[1]]; ids <- subsets[[cf[[2]]]]; fun <- cf[[3]]
  results <- vector("list", length(chunks[[cf[[2]]]]))
  # not timed: one call on one series first (loads and byte-compiles what the
  # method uses), and a garbage collection, so no run pays for another's garbage
  invisible(fun(sts(observed = obs[, 1, drop = FALSE], freq = 52, start = c(2000, 1))))
  invisible(gc())
  elapsed <- 0
  for (i in seq_along(results)) {
    x <- chunks[[cf[[2]]]][[i]]
    elapsed <- elapsed + system.time(results[[i]] <- fun(x))[["elapsed"]]
  }
  ub <- do.call(cbind, lapply(results, upperbound))
  al <- do.call(cbind, lapply(results, alarms))
  first <- n - nrow(ub) + 1
  writeBin(as.integer(ids), file.path(dir, paste0("r_", name, ".series")), size = 4, endian = "little")
  writeBin(as.double(ub), file.path(dir, paste0("r_", name, ".ub")), size = 8, endian = "little")
  writeBin(as.integer(al), file.path(dir, paste0("r_", name, ".alarm")), size = 4, endian = "little")
  times[nrow(times) + 1, ] <- list(name, length(ids), elapsed, first)
  cat(sprintf("R  %-10s %8.1f s for %d series (%.2f ms a series), weeks %d-%d\n", name, elapsed, length(ids),
              1000 * elapsed / length(ids), first, n))
  flush(stdout())
}
write.csv(times, file.path(dir, "r_times.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("(surveillance %s, %s)\n", as.character(packageVersion("surveillance")), R.version.string))
