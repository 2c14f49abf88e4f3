// Package secagg is secure aggregation (Bonawitz et al., CCS 2017): a
// cohort of contributors sends an aggregator its inputs masked so that the
// aggregator learns their sum and nothing else about any one of them, even
// when some contributors drop out mid-round.
//
// Each party advertises two X25519 keys. Every pair of parties agrees a
// mask key, which ChaCha20 expands into a mask that one of the pair adds
// to its input and the other subtracts, so pairwise masks cancel in the
// sum; each party also adds a self-mask of its own. Each party
// Shamir-shares its mask private key and its self-mask seed with threshold
// t among the cohort (lattigo's threshold machinery), sending each share
// sealed (XChaCha20-Poly1305 under a key agreed with the recipient) through
// the aggregator. Once the masked inputs are in, the survivors reveal their
// shares of every survivor's self-mask seed and of every dropped party's
// mask key, never both for one party: the aggregator removes the survivors'
// self-masks and the masks the survivors shared with the dropped, and is
// left with the sum of the survivors' inputs modulo 2^Bits. An
// honest-but-curious aggregator, even with up to t−1 colluding parties,
// learns nothing more than that sum.
//
// Client and Server are deterministic state machines, as the rest of
// Cairn's protocols: messages in, messages out, no I/O, no clock; every
// secret a client uses is derived from the seed its caller gives it. Inputs
// are fixed-point integers (see Encode and Decode) modulo 2^Bits at a scale
// chosen so that the sum cannot wrap.
package secagg
