package ledger

import (
	"errors"
	"math/bits"
	"sort"
)

// SplitEmission splits emission among contributions pro rata to their
// tokens, in integer units, so that the shares add up to exactly emission
// (or are all zero when the tokens add up to zero: no one to pay, nothing
// minted).
//
// Rule (largest remainder): contribution i first gets
// floor(emission·tokens[i] / T), T the total; the R units left over
// (R < the number of contributions with tokens) go one each to the R
// contributions with the largest remainders emission·tokens[i] mod T,
// ties going to the lower index (contributions are in worker-key order).
// The products are computed in 128 bits, so nothing overflows. It fails
// only when the tokens add up to more than 2^64-1.
func SplitEmission(emission uint64, tokens []uint64) ([]uint64, error) {
	var total, carry uint64
	for _, t := range tokens {
		total, carry = bits.Add64(total, t, 0)
		if carry != 0 {
			return nil, errors.New("ledger: tokens overflow 64 bits")
		}
	}
	shares := make([]uint64, len(tokens))
	if total == 0 {
		return shares, nil
	}
	rems := make([]uint64, len(tokens))
	var paid uint64
	for i, t := range tokens {
		hi, lo := bits.Mul64(emission, t)
		shares[i], rems[i] = bits.Div64(hi, lo, total) // hi < total because t <= total
		paid += shares[i]                              // sum of floors <= emission
	}
	left := emission - paid
	if left == 0 {
		return shares, nil
	}
	order := make([]int, 0, len(tokens))
	for i, t := range tokens {
		if t > 0 {
			order = append(order, i)
		}
	}
	sort.SliceStable(order, func(a, b int) bool { return rems[order[a]] > rems[order[b]] })
	for _, i := range order[:left] {
		shares[i]++
	}
	return shares, nil
}

// slashAmount is floor(atRisk · basisPoints / 10000).
func slashAmount(atRisk uint64, basisPoints uint32) uint64 {
	hi, lo := bits.Mul64(atRisk, uint64(basisPoints))
	q, _ := bits.Div64(hi, lo, 10000) // hi < 10000 because basisPoints <= 10000
	return q
}
