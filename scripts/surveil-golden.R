#!/usr/bin/env Rscript
# Regenerate the reference outputs that tests/unit/test_surveil.c compares
# CareSync's detectors against: R package `surveillance` (Debian:
# r-cran-surveillance) run on that package's bundled data sets.
#
#   Rscript scripts/surveil-golden.R [OUTDIR] [--quick]
#
# OUTDIR defaults to tests/golden/surveil. It receives
#   data/<dataset>.csv    the observed counts (one column per series)
#   <config>.csv          dataset,series,t,upperbound,alarm for every point R
#                         evaluated (t is 1-based; NA where R gives NA)
#   manifest.csv          config,method,datasets,params — params use the same
#                         key=value names as `caresync surveil detect`
# --quick keeps three data sets (the comparison test that runs R uses it).
#
# Series are rebuilt as plain weekly sts objects (integer time, freq 52), so
# Farrington's reference weeks are "52 weeks back", the convention CareSync's
# ISO-week series use, not calendar dates.
suppressMessages(library(surveillance))
args <- commandArgs(trailingOnly = TRUE)
quick <- "--quick" %in% args
args <- setdiff(args, "--quick")
out <- if (length(args)) args[1] else "tests/golden/surveil"
dir.create(file.path(out, "data"), recursive = TRUE, showWarnings = FALSE)

load_sts <- function(name) {
  e <- new.env()
  data(list = name, package = "surveillance", envir = e)
  x <- get(name, envir = e)
  if (inherits(x, "disProg")) x <- disProg2sts(x)
  o <- observed(x)
  storage.mode(o) <- "double"
  if (is.null(colnames(o))) colnames(o) <- paste0("s", seq_len(ncol(o)))
  colnames(o) <- gsub("[^A-Za-z0-9_.-]", "_", colnames(o)) # e.g. momo's age groups "[0,1)"
  # start week 1: CUSUM's m = "glm" takes its harmonics from the week number
  sts(observed = o, freq = x@freq, start = c(2000, 1))
}

all_sets <- c("salmonella.agona", "shadar", "hepatitisA", "salmNewport", "stsNewport",
              "salmAllOnset", "momo", "ha.sts", "influMen", "abattoir", "k1", "m1", "n1", "s1", "q2")
long_sets <- c("salmonella.agona", "shadar", "salmNewport", "stsNewport", "salmAllOnset",
               "salmHospitalized", "momo", "ha.sts", "influMen")
cusum_sets <- c("salmonella.agona", "shadar", "hepatitisA", "ha.sts", "influMen", "abattoir", "m1", "s1")
if (quick) {
  all_sets <- c("salmonella.agona", "ha.sts", "influMen")
  long_sets <- c("salmonella.agona", "influMen")
  cusum_sets <- c("salmonella.agona", "ha.sts")
}

# config name, method, data sets, CareSync params, R control
configs <- list(
  list("ears_c1", "c1", all_sets, "", list(method = "C1")),
  list("ears_c2", "c2", all_sets, "", list(method = "C2")),
  list("ears_c3", "c3", all_sets, "", list(method = "C3")),
  list("ears_c1_b10", "c1", all_sets, "baseline=10;min-sigma=1;alpha=0.05",
       list(method = "C1", baseline = 10, minSigma = 1, alpha = 0.05)),
  list("ears_c3_b5", "c3", all_sets, "baseline=5;min-sigma=0.5;alpha=0.01",
       list(method = "C3", baseline = 5, minSigma = 0.5, alpha = 0.01)),
  list("cusum_standard", "cusum", cusum_sets, "range-start=53", list(trans = "standard")),
  list("cusum_rossi", "cusum", cusum_sets, "range-start=53;trans=rossi;k=0.5;h=4", list(trans = "rossi", k = 0.5, h = 4)),
  list("cusum_anscombe", "cusum", cusum_sets, "range-start=53;trans=anscombe", list(trans = "anscombe")),
  list("cusum_anscombe2nd", "cusum", cusum_sets, "range-start=53;trans=anscombe2nd", list(trans = "anscombe2nd")),
  list("cusum_pearsonnb", "cusum", cusum_sets, "range-start=53;trans=pearsonNegBin;cusum-alpha=0.2",
       list(trans = "pearsonNegBin", alpha = 0.2)),
  list("cusum_none", "cusum", cusum_sets, "range-start=53;trans=none;k=3;h=10", list(trans = "none", k = 3, h = 10)),
  list("cusum_glm", "cusum", cusum_sets, "range-start=105;m=glm", list(m = "glm")),
  list("farrington_default", "farrington", long_sets, "", list()),
  list("farrington_noufaily", "farrington", long_sets,
       "b=4;no-periods=10;past-weeks=26;weights-threshold=2.58;threshold=nbPlugin",
       list(b = 4, noPeriods = 10, pastWeeksNotIncluded = 26, weightsThreshold = 2.58,
            thresholdMethod = "nbPlugin")),
  list("farrington_muan", "farrington", long_sets,
       "b=3;w=2;no-periods=10;past-weeks=26;weights-threshold=2.58;threshold=muan;alpha=0.01",
       list(b = 3, w = 2, noPeriods = 10, pastWeeksNotIncluded = 26, weightsThreshold = 2.58,
            thresholdMethod = "muan", alpha = 0.01)),
  list("farrington_classic", "farrington", long_sets,
       "b=3;w=3;weights-threshold=1;powertrans=2/3;p-trend=0.05;reweight=true",
       list(b = 3, w = 3, weightsThreshold = 1)),
  list("farrington_notrend", "farrington", long_sets,
       "b=4;trend=false;reweight=false;powertrans=1/2;limit54=3,3",
       list(b = 4, trend = FALSE, reweight = FALSE, powertrans = "1/2", limit54 = c(3, 3))),
  list("farrington_none", "farrington", long_sets, "b=2;w=4;powertrans=none;no-periods=4",
       list(b = 2, w = 4, powertrans = "none", noPeriods = 4))
)

fmt <- function(v) ifelse(is.na(v), "NA", sprintf("%.17g", v))
written <- character(0)
manifest <- data.frame(config = character(0), method = character(0), datasets = character(0),
                       params = character(0))
for (cf in configs) {
  name <- cf[[1]]; method <- cf[[2]]; sets <- cf[[3]]; params <- cf[[4]]; ctl <- cf[[5]]
  rows <- list()
  for (d in sets) {
    x <- load_sts(d)
    if (!(d %in% written)) {
      write.csv(observed(x), file.path(out, "data", paste0(d, ".csv")), row.names = FALSE, quote = FALSE)
      written <- c(written, d)
    }
    n <- nrow(observed(x))
    res <- switch(method,
      c1 = , c2 = , c3 = earsC(x, control = ctl),
      cusum = {
        start <- as.integer(sub(".*range-start=([0-9]+).*", "\\1", params))
        ctl$range <- start:n
        cusum(x, control = ctl)
      },
      farrington = suppressWarnings(farringtonFlexible(x, control = modifyList(ctl, list(glmWarnings = FALSE)))))
    t0 <- n - nrow(observed(res))
    for (j in seq_len(ncol(observed(res)))) {
      ub <- upperbound(res)[, j]
      al <- alarms(res)[, j]
      rows[[length(rows) + 1]] <- data.frame(dataset = d, series = j, t = t0 + seq_along(ub),
                                             upperbound = fmt(ub),
                                             alarm = ifelse(is.na(al), "NA", as.integer(al)))
    }
  }
  tab <- do.call(rbind, rows)
  write.csv(tab, file.path(out, paste0(name, ".csv")), row.names = FALSE, quote = FALSE)
  manifest[nrow(manifest) + 1, ] <- list(name, method, paste(sets, collapse = " "), params)
  cat(sprintf("%-20s %6d points\n", name, nrow(tab)))
}
write.csv(manifest, file.path(out, "manifest.csv"), row.names = FALSE, quote = FALSE)
cat(sprintf("surveillance %s, %s\n", as.character(packageVersion("surveillance")), R.version.string))
