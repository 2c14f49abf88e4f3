package records

import "math/big"

type bigInt struct{}

func (bigInt) mulmod(a, x, b uint64) uint64 {
	r := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(x))
	r.Add(r, new(big.Int).SetUint64(b))
	r.Mod(r, new(big.Int).SetUint64(mersenne61))
	return r.Uint64()
}
