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
// (package diloco imports it, not the reverse; diloco.Recomputer reruns a
// worker's round and diloco.Recomputer.Verify runs a validator's whole
// check with a Judge).
//
// # A round's checks
//
//   - Screen scores every contribution: its norm against the round's median
//     (x50, zeros, lazy work), its median cosine similarity with the other
//     contributions (noise, negation), byte-identical payloads (copiers),
//     non-finite values, and optionally its held-out loss gain (HeldOut).
//   - Sample picks the contributions to recompute: each with probability p
//     by a beacon fixed after the commits (Drawn), plus the most suspicious.
//   - A validator recomputes each pick from θr and the worker's revealed
//     start state (checked against its commitment and against the end state
//     of its previous contribution) and Judge compares: bitwise on the same
//     kernel path, within DefaultTolerance (relative L2) across paths.
//   - Aggregator clips every contribution to ClipMultiple times the median
//     norm and takes a coordinate-wise trimmed weighted mean.
//
// # Measured on the demo model
//
// diloco.DefaultConfig (width 128, 4 layers, block 64, batch 12, H = 50,
// int8 with error feedback, 867,328 parameters) on a 100-round schedule, 4
// honest workers and one adversary (as worker 0) at a time, on a 2-core
// AVX-512 KVM guest shared with other jobs, 2026-11-30:
//
//	CAIRN_MEASURE_VERIFY=1 go test ./diloco -run TestMeasureVerification -v -timeout 1h
//
// Cross-path drift: the relative L2 distance between the decoded Δ of one
// worker's round trained from the same start state on two kernel paths,
// after H = 50 inner steps (each of the 4 workers; min .. max):
//
//	round  avx512 vs avx2    avx512 vs generic  avx2 vs generic
//	0      5.8e-5 .. 7.9e-5  6.9e-5 .. 8.4e-5   6.4e-5 .. 7.8e-5
//	10     5.0e-4 .. 5.9e-4  5.1e-4 .. 6.2e-4   4.8e-4 .. 6.1e-4
//	40     5.0e-4 .. 5.9e-4  5.1e-4 .. 5.8e-4   5.0e-4 .. 6.0e-4
//
// On one path the recomputation is bitwise (distance 0, equal payloads and
// end-state hashes) on every path. DefaultTolerance is 0.01: 16 times the
// largest drift measured (6.2e-4), and 91 times below the closest cheat
// (the lazy worker, 0.91). Other shapes and other H drift differently:
// re-measure before using the tolerance for them.
//
// Distance of each adversary's payload from the recomputation, and its
// screening (DefaultScreenOptions, held-out loss of 2 batches at Step
// 0.25) at rounds 0 / 10 / 40; every one fails the Judge:
//
//	adversary                    distance            flags (score)
//	noise, the honest norm       1.41                dissimilar (2.0 / 2.0 / 2.0)
//	honest Δ x50                 49                  norm-high, loss-worse (9.6 / 414 / 357)
//	zeros                        1                   norm-low (MaxScore)
//	copier (worker 1, round−1)   – / 1.20 / 1.36     duplicate (MaxScore)
//	lazy (H/5 steps, claims H)   0.95 / 0.92 / 0.91  norm-low (4.3 / 1.8 / 1.8): norm ratio 0.11 / 0.41 / 0.41
//	negated honest Δ             2                   loss-worse, dissimilar (4.0 / 4.0 / 4.5)
//	overflow (int8 scales max)   1e41                norm-high, loss-worse, dissimilar (MaxScore)
//
// The honest workers: norm ratios 0.98 .. 1.05; similarity 0.95 (round 0),
// 0.37 (10), 0.18 .. 0.22 (40); held-out gain of a quarter step +1.1 nats
// (round 0), +0.011 .. +0.017 (10), +0.005 .. +0.010 (40) (of the whole Δ
// it is −0.015 .. −0.035 at round 10: a single worker's Δ overshoots,
// hence HeldOut.Step); highest score 0.37, never flagged. Another honest
// worker's Δ is 0.33 (round 0) to 1.28 (round 40) away.
//
// Costs, medians of 7 alternating runs on the same path
// (CAIRN_MEASURE_VERIFY=1 go test ./diloco -run TestMeasureVerifyCost -v):
// a worker round 2.27 s; its recomputation 1.01x (fastest of each: 1.003x);
// Recomputer.Verify, with the reveal's decoding and hashing and the
// judging, 1.02x; hashing a worker's state 9 ms (0.4%); judging 2 ms on
// the same path, 14 ms across paths (decoding both); decoding a
// contribution 6 ms; its held-out loss 32 ms with 1 batch (1.4%), 59 ms
// with 2 (2.6%). Verification at p = 10%, with screening of every
// contribution and one state hash per round: 12.1% of the training compute
// with 1 held-out batch, 13.3% with 2. Screen of 4 contributions (norms,
// similarities) 13 ms; Aggregate of 2^20 values (BenchmarkAggregate) 33 ms
// for 5 contributions, 81 ms for 10.
package verify
