// Package verify holds the rules by which Cairn checks untrusted training
// work: screening of every contribution, the draw of contributions to
// recompute, the comparison of a recomputation with what was submitted
// (a Verdict, ready for the ledger), and the robust aggregation that keeps
// a minority of bad contributions from moving the model much before they
// are caught.
//
// It is protocol logic: deterministic, no I/O, no clock, no randomness of
// its own (beacons are arguments). It works on decoded contributions
// (float32 slices) and digests; it does not know the round protocol
// (package diloco imports it, not the reverse).
package verify
