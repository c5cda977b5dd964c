// Package predict holds the customer-base models of issue #12 as pure,
// deterministic functions: BG/NBD and Pareto/NBD for repeat purchases,
// Gamma-Gamma for spend, and lifetime value over a horizon built from them
// (docs/predictions.md).
//
// Inputs are per-customer summaries (RFM: x repeat purchases counted per
// customer-day, t_x the time of the last one, T the customer's age at the end
// of calibration, all from the first purchase, in a time unit of the caller's
// choice, weeks in the published fits), computed by Summarize from a list of
// (customer, day, amount). Fitting takes sufficient statistics: customers with
// equal (x, t_x, T) are one group with a count (Grouper), so memory grows with
// the distinct summaries, not with the customers. Fits are maximum likelihood
// over log-parameters (gonum/optimize) from fixed starting points: the same
// input gives the same parameters, bit for bit; nothing here reads the clock,
// draws random numbers or depends on map order.
package predict
