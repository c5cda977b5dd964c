// Package segment discovers customer segments (issue #12, docs/predictions.md,
// "Segment discovery"): k-means with k-means++ seeding on standardized RFM
// and behaviour features, k chosen by the silhouette, and for each cluster
// its size, a plain-language description of its centroid and a rule in
// Aurum's audience language (docs/rules.md, checked by rules.Compile) that
// approximates membership, with the rule's precision and recall against the
// cluster.
//
// Nothing here does I/O or reads the clock; the only randomness is drawn
// from a PCG generator seeded by Options.Seed, so the same rows and options
// give the same segments.
package segment
