// Package propensity holds the propensity models of issue #12 as pure,
// deterministic functions: binary classifiers for "does EVENT happen within N
// days" (docs/predictions.md, "Propensity").
//
// A Dataset is a dense feature matrix with boolean labels. Standardizer
// centres and scales its columns; Logistic is L2-regularized logistic
// regression fitted by Newton's method (iteratively reweighted least squares)
// from zero weights; Boosted is a small gradient-boosted tree ensemble
// (logistic loss, histogram splits, second-order leaves, no sampling). AUC
// scores a ranking; StratifiedSplit draws a fixed train/test split from a
// seed. Examples turns a log-like history into training rows with a
// time-based split: features as of a cutoff, label = the target event within
// the horizon after it; FromFeatures computes the same row for a live profile
// from its feature row (projections/features). Validate checks a model read
// from outside (a control record) before it scores.
//
// Nothing here does I/O or reads the clock; the only randomness is the
// seeded split. The same input gives the same model, bit for bit, and nothing
// depends on map order.
package propensity
