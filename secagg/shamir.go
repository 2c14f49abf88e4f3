package secagg

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/utils/sampling"
)

// Shamir sharing of 32-byte secrets, on lattigo's threshold machinery
// (multiparty.Combiner's Lagrange interpolation, the ring's polynomial
// evaluation): a secret is written into the first 8 of 16 coefficients of
// a polynomial modulo a 60-bit prime, 4 bytes each, and shared with a
// random polynomial of degree t−1 whose coefficients are such polynomials.
// The 8 unused coefficients must come back zero: shares that do not belong
// together reconstruct them otherwise (with probability about 2^-480), so a
// bad reconstruction is detected rather than returned.

// ShareSize is the size of a marshalled share.
const ShareSize = 152

const secretWords = 8

// sharer holds the ring the secrets are shared in.
type sharer struct {
	params rlwe.Parameters
	ring   ringqp.Ring
	header []byte // a share of this ring: its sizes around the coefficients
}

func newSharer() (*sharer, error) {
	params, err := rlwe.NewParametersFromLiteral(rlwe.ParametersLiteral{LogN: 4, LogQ: []int{60}})
	if err != nil {
		return nil, fmt.Errorf("secagg: sharing ring: %v", err)
	}
	s := &sharer{params: params, ring: *params.RingQP()}
	zero, err := multiparty.ShamirSecretShare{Poly: s.ring.NewPoly()}.MarshalBinary()
	if err != nil || len(zero) != ShareSize {
		return nil, fmt.Errorf("secagg: a share marshals to %d bytes, expected %d (%v)", len(zero), ShareSize, err)
	}
	s.header = zero
	return s, nil
}

// split shares secret among points with threshold t, the polynomial's
// random coefficients drawn from a PRNG keyed with key (the caller's
// randomness). Points must be distinct and non-zero.
func (s *sharer) split(secret [32]byte, points []uint64, t int, key []byte) ([][]byte, error) {
	if t < 1 || t > len(points) {
		return nil, fmt.Errorf("secagg: threshold %d for %d shares", t, len(points))
	}
	prng, err := sampling.NewKeyedPRNG(key)
	if err != nil {
		return nil, err
	}
	us := ringqp.NewUniformSampler(prng, s.ring)
	gen := make([]ringqp.Poly, t)
	gen[0] = s.ring.NewPoly()
	for i := range secretWords {
		gen[0].Q.Coeffs[0][i] = uint64(binary.LittleEndian.Uint32(secret[4*i:]))
	}
	for i := 1; i < t; i++ {
		gen[i] = s.ring.NewPoly()
		us.Read(gen[i])
	}
	out := make([][]byte, len(points))
	share := multiparty.ShamirSecretShare{Poly: s.ring.NewPoly()}
	for k, x := range points {
		s.ring.EvalPolyScalar(gen, x, share.Poly)
		if out[k], err = share.MarshalBinary(); err != nil {
			return nil, err
		}
		if len(out[k]) != ShareSize {
			return nil, fmt.Errorf("secagg: a share marshals to %d bytes, expected %d", len(out[k]), ShareSize)
		}
	}
	return out, nil
}

// errInconsistent is a reconstruction from shares that do not belong to
// one sharing.
var errInconsistent = errors.New("shares do not belong to one sharing")

// combine reconstructs a secret from t or more shares at distinct points
// (only the first t are used). It fails on malformed shares and on shares
// that do not belong together.
func (s *sharer) combine(points []uint64, shares [][]byte, t int) ([32]byte, error) {
	var secret [32]byte
	if len(points) != len(shares) || len(points) < t || t < 1 {
		return secret, fmt.Errorf("secagg: %d shares for threshold %d", len(shares), t)
	}
	points, shares = points[:t], shares[:t]
	active := make([]multiparty.ShamirPublicPoint, t)
	for k, x := range points {
		active[k] = multiparty.ShamirPublicPoint(x)
	}
	sum := s.ring.NewPoly()
	add := rlwe.NewSecretKey(s.params)
	for k := range points {
		if len(shares[k]) != ShareSize {
			return secret, fmt.Errorf("secagg: a share of %d bytes, expected %d", len(shares[k]), ShareSize)
		}
		// The sizes the header declares are checked here, before lattigo's
		// decoder allocates what they say.
		if !bytes.Equal(shares[k][:16], s.header[:16]) || !bytes.Equal(shares[k][16+16*8:], s.header[16+16*8:]) {
			return secret, errors.New("secagg: a malformed share")
		}
		var sh multiparty.ShamirSecretShare
		if err := sh.UnmarshalBinary(shares[k]); err != nil || sh.Q.N() != 16 || sh.LevelQ() != 0 || sh.LevelP() != -1 {
			return secret, errors.New("secagg: a malformed share")
		}
		q := s.ring.RingQ.SubRings[0].Modulus
		for _, c := range sh.Q.Coeffs[0] {
			if c >= q {
				return secret, errors.New("secagg: a share with a coefficient out of range")
			}
		}
		cmb := multiparty.NewCombiner(s.params, active[k], active, t)
		if err := cmb.GenAdditiveShare(active, active[k], sh, add); err != nil {
			return secret, err
		}
		s.ring.Add(sum, add.Value, sum)
	}
	c := sum.Q.Coeffs[0]
	for i := range secretWords {
		if c[i] > 0xffffffff {
			return secret, errInconsistent
		}
		binary.LittleEndian.PutUint32(secret[4*i:], uint32(c[i]))
	}
	for _, v := range c[secretWords:] {
		if v != 0 {
			return secret, errInconsistent
		}
	}
	return secret, nil
}
