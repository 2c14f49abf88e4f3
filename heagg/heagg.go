// Package heagg is aggregation under threshold homomorphic encryption, the
// alternative to secagg's masking that issue 15 measures: contributions
// are encrypted under a collective public key (multiparty BGV from
// lattigo v6), the aggregator adds ciphertexts and never sees a plaintext,
// and the sum is decrypted only when t of the n parties each contribute a
// decryption share.
//
// Setup: each party draws a secret key and publishes its share of the
// collective public key (lattigo's PublicKeyGenProtocol, on a common
// random polynomial derived from the round's session); each party
// Shamir-shares its secret key among the others (Thresholdizer) and sums
// the shares it receives into its threshold key. Contribution: a party
// encodes its fixed-point values (below the plaintext modulus) into
// ciphertexts of Slots values. Aggregation: ciphertexts add. Decryption:
// each of t active parties turns its threshold key into an additive share
// for the active set (Combiner) and sends a key-switch share (to the zero
// key, with noise flooding); their sum decrypts the aggregate.
//
// Unlike secagg, lattigo draws the encryption and flooding noise from its
// own generator, so messages are not reproducible from a seed; the sums
// are exact.
package heagg

import (
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/bgv"
	"github.com/tuneinsight/lattigo/v6/utils/sampling"
)

// Modulus is the plaintext modulus: values and sums are taken modulo it.
const Modulus = 65537

// Scheme holds the parameters every party and the aggregator share.
type Scheme struct {
	params bgv.Parameters
	enc    *bgv.Encoder
	eval   *bgv.Evaluator
}

// NewScheme returns BGV at ring degree 2^13 (8,192 slots a ciphertext)
// with one 60-bit modulus, enough for additions and one collective
// decryption, and plaintext modulus 65537.
func NewScheme() (*Scheme, error) {
	params, err := bgv.NewParametersFromLiteral(bgv.ParametersLiteral{LogN: 13, LogQ: []int{60}, PlaintextModulus: Modulus})
	if err != nil {
		return nil, fmt.Errorf("heagg: parameters: %v", err)
	}
	return &Scheme{params: params, enc: bgv.NewEncoder(params), eval: bgv.NewEvaluator(params, nil)}, nil
}

// Slots is how many values a ciphertext holds.
func (s *Scheme) Slots() int { return s.params.MaxSlots() }

// crs is the common random string of a session.
func crs(session [32]byte, what string) (*sampling.KeyedPRNG, error) {
	return sampling.NewKeyedPRNG(append(session[:], what...))
}

// Party is one contributor's keys.
type Party struct {
	ID  uint64
	s   *Scheme
	sk  *rlwe.SecretKey
	tsk multiparty.ShamirSecretShare
	thr multiparty.Thresholdizer
	pol multiparty.ShamirPolynomial
}

// NewParty draws party id's secret key (id is its Shamir point: distinct,
// non-zero) and its polynomial for sharing it with threshold t.
func (s *Scheme) NewParty(id uint64, t int) (*Party, error) {
	if id == 0 {
		return nil, errors.New("heagg: party 0")
	}
	p := &Party{ID: id, s: s, sk: rlwe.NewKeyGenerator(s.params).GenSecretKeyNew(), thr: multiparty.NewThresholdizer(s.params)}
	var err error
	if p.pol, err = p.thr.GenShamirPolynomial(t, p.sk); err != nil {
		return nil, err
	}
	p.tsk = p.thr.AllocateThresholdSecretShare()
	return p, nil
}

// PublicKeyShare is this party's share of the collective public key.
func (p *Party) PublicKeyShare(session [32]byte) (multiparty.PublicKeyGenShare, error) {
	ckg := multiparty.NewPublicKeyGenProtocol(p.s.params)
	c, err := crs(session, "ckg")
	if err != nil {
		return multiparty.PublicKeyGenShare{}, err
	}
	share := ckg.AllocateShare()
	ckg.GenShare(p.sk, ckg.SampleCRP(c), &share)
	return share, nil
}

// PublicKey combines every party's share into the collective public key.
func (s *Scheme) PublicKey(session [32]byte, shares []multiparty.PublicKeyGenShare) (*rlwe.PublicKey, error) {
	if len(shares) == 0 {
		return nil, errors.New("heagg: no public-key shares")
	}
	ckg := multiparty.NewPublicKeyGenProtocol(s.params)
	c, err := crs(session, "ckg")
	if err != nil {
		return nil, err
	}
	sum := ckg.AllocateShare()
	for _, sh := range shares {
		ckg.AggregateShares(sh, sum, &sum)
	}
	pk := rlwe.NewPublicKey(s.params)
	ckg.GenPublicKey(sum, ckg.SampleCRP(c), pk)
	return pk, nil
}

// KeyShareFor is this party's Shamir share of its secret key for party to.
func (p *Party) KeyShareFor(to uint64) multiparty.ShamirSecretShare {
	sh := p.thr.AllocateThresholdSecretShare()
	p.thr.GenShamirSecretShare(multiparty.ShamirPublicPoint(to), p.pol, &sh)
	return sh
}

// AddKeyShare sums a share received from another party (or this party's
// own) into this party's threshold key.
func (p *Party) AddKeyShare(sh multiparty.ShamirSecretShare) error {
	return p.thr.AggregateShares(p.tsk, sh, &p.tsk)
}

// Encrypt encodes values (each below Modulus) into ciphertexts under pk.
func (s *Scheme) Encrypt(pk *rlwe.PublicKey, values []uint64) ([]*rlwe.Ciphertext, error) {
	encr := rlwe.NewEncryptor(s.params, pk)
	var out []*rlwe.Ciphertext
	for off := 0; off < len(values); off += s.Slots() {
		chunk := values[off:min(off+s.Slots(), len(values))]
		for _, v := range chunk {
			if v >= Modulus {
				return nil, fmt.Errorf("heagg: value %d not below the plaintext modulus %d", v, Modulus)
			}
		}
		pt := bgv.NewPlaintext(s.params, s.params.MaxLevel())
		if err := s.enc.Encode(chunk, pt); err != nil {
			return nil, err
		}
		ct := bgv.NewCiphertext(s.params, 1, s.params.MaxLevel())
		if err := encr.Encrypt(pt, ct); err != nil {
			return nil, err
		}
		out = append(out, ct)
	}
	return out, nil
}

// Add adds ciphertext vector b into a (of the same length).
func (s *Scheme) Add(a, b []*rlwe.Ciphertext) error {
	if len(a) != len(b) {
		return fmt.Errorf("heagg: adding %d ciphertexts to %d", len(b), len(a))
	}
	for i := range a {
		if err := s.eval.Add(a[i], b[i], a[i]); err != nil {
			return err
		}
	}
	return nil
}

// floodSigma is the standard deviation of the noise flooding a decryption
// share: it hides the party's key in what it reveals.
const floodSigma = 1 << 30

// DecryptionShares is this party's share of decrypting cts, as one of the
// active parties (at least t, this one among them).
func (p *Party) DecryptionShares(active []uint64, t int, cts []*rlwe.Ciphertext) ([]multiparty.KeySwitchShare, error) {
	pts := make([]multiparty.ShamirPublicPoint, len(active))
	for i, a := range active {
		pts[i] = multiparty.ShamirPublicPoint(a)
	}
	add := rlwe.NewSecretKey(p.s.params)
	cmb := multiparty.NewCombiner(*p.s.params.GetRLWEParameters(), multiparty.ShamirPublicPoint(p.ID), pts, t)
	if err := cmb.GenAdditiveShare(pts, multiparty.ShamirPublicPoint(p.ID), p.tsk, add); err != nil {
		return nil, err
	}
	cks, err := multiparty.NewKeySwitchProtocol(p.s.params, ring.DiscreteGaussian{Sigma: floodSigma, Bound: 6 * floodSigma})
	if err != nil {
		return nil, err
	}
	zero := rlwe.NewSecretKey(p.s.params)
	out := make([]multiparty.KeySwitchShare, len(cts))
	for i, ct := range cts {
		out[i] = cks.AllocateShare(ct.Level())
		cks.GenShare(add, zero, ct, &out[i])
	}
	return out, nil
}

// Decrypt combines the active parties' decryption shares of cts and
// returns the first dim values.
func (s *Scheme) Decrypt(cts []*rlwe.Ciphertext, shares [][]multiparty.KeySwitchShare, dim int) ([]uint64, error) {
	if dim > len(cts)*s.Slots() {
		return nil, fmt.Errorf("heagg: %d values from %d ciphertexts", dim, len(cts))
	}
	cks, err := multiparty.NewKeySwitchProtocol(s.params, ring.DiscreteGaussian{Sigma: floodSigma, Bound: 6 * floodSigma})
	if err != nil {
		return nil, err
	}
	dec := rlwe.NewDecryptor(s.params, rlwe.NewSecretKey(s.params))
	out := make([]uint64, 0, len(cts)*s.Slots())
	vals := make([]uint64, s.Slots())
	for i, ct := range cts {
		sum := cks.AllocateShare(ct.Level())
		for _, party := range shares {
			if len(party) != len(cts) {
				return nil, fmt.Errorf("heagg: %d decryption shares for %d ciphertexts", len(party), len(cts))
			}
			if err := cks.AggregateShares(party[i], sum, &sum); err != nil {
				return nil, err
			}
		}
		switched := bgv.NewCiphertext(s.params, 1, ct.Level())
		cks.KeySwitch(ct, sum, switched)
		pt := bgv.NewPlaintext(s.params, ct.Level())
		dec.Decrypt(switched, pt)
		if err := s.enc.Decode(pt, vals); err != nil {
			return nil, err
		}
		out = append(out, vals...)
	}
	return out[:dim], nil
}
