// Package recommend holds the affinity and next-best-product models of
// issue #12 as pure, deterministic functions (docs/predictions.md,
// "Affinities and next best product").
//
// Interactions (a user viewed, carted or bought an item of a category, at a
// time) feed three things: Affinities, a profile's top categories and items
// by exponentially decayed, kind-weighted interactions; CoOccurrence, the
// item-to-item counts of a relation ("bought together", "viewed then
// bought", or any two kinds within a time window), kept in bounded memory as
// the top items per item (Space-Saving counters); and Model, which adds
// popularity (overall and per category) and ranks the next best products of
// a profile: the best-scoring items it has not bought. Evaluate measures hit
// rate at K on held-out later interactions against the popularity baseline
// in the same run.
//
// Nothing here does I/O, reads the clock or draws random numbers; ties are
// broken by key, never by map order.
package recommend
