// Package coef holds the numerical constants shared by the portable Go
// kernels of package vecmath and by the assembly generator
// (vecmath/internal/gen), so that every implementation evaluates the same
// approximations.
//
// The polynomial coefficients were computed by vecmath/internal/fit
// (weighted minimax fits, rounded to float32 one coefficient at a time);
// each is written with 9 significant digits, which round-trips float32
// exactly, and its IEEE bit pattern is given in the comment (checked by the
// vecmath tests).
package coef

// exp(x) = 2^n * p(r), n = round(x*log2(e)), r = x - n*ln2 (ln2 split into
// Ln2Hi + Ln2Lo, Ln2Hi having 11 significant bits so n*Ln2Hi is exact),
// p(r) = 1 + r + ExpC2 r^2 + ... + ExpC6 r^6 on |r| <= ln2/2.
// Fitted relative error of p: 3.9e-9; float32 evaluation error < 7.6e-8.
const (
	ExpMin = -104 // exp(x) rounds to 0 in float32 for x <= ExpMin
	ExpMax = 88.8 // exp(x) overflows float32 for x >= 88.73

	// ExpTiny (2^-64) is the smallest result ExpSub keeps: smaller ones
	// become 0. Softmax probabilities below it change no sum, and
	// keeping them, and the gradients made from them, out of the
	// subnormal range avoids the microcode assists (about 100 times the
	// cost of a multiply on x86) that subnormal operands take.
	ExpTiny = 0x1p-64
	// ExpSubMin is where ExpSub clamps its differences from below: its
	// exp is under ExpTiny (so written as 0) and above the subnormals,
	// which even an intermediate result must not reach (on x86 an
	// underflowing multiply takes the same assist).
	ExpSubMin = -50

	Log2e = 1.44269504088896340735992468100189214 // log2(e)
	Ln2Hi = 0.693359375                           // 0x3f318000
	Ln2Lo = -2.12194440e-4                        // 0xb95e8083; Ln2Hi+Ln2Lo = ln 2

	ExpC2 = 0.49999994    // 0x3efffffe
	ExpC3 = 0.166665196   // 0x3e2aaa48
	ExpC4 = 0.0416684076  // 0x3d2aac7e
	ExpC5 = 0.0083689196  // 0x3c091dcb
	ExpC6 = 0.00138141797 // 0x3ab510b2
)

// erf(z), z = x/sqrt(2) for GELU, is evaluated in two branches, t = |z|:
//
//	t <  ErfSplit: erf(z) = z + z*P(z^2), P(s) = ErfP0 + ErfP1 s + ... + ErfP6 s^6
//	t >= ErfSplit: erfc(t) = exp(-t^2) * R(min(t, ErfTop) - ErfCenter),
//	               R(u) = ErfR0 + ErfR1 u + ... + ErfR11 u^11 (R ~ erfcx)
//
// P has relative error 1.4e-8 on [0, 0.922]; R has relative error 7.1e-8 on
// [0.922, 4]. Beyond ErfTop erfc(t) < 1.6e-8 and the clamped R keeps the
// result monotone and tending to 0 (exp(-t^2) underflows).
// For Phi(x) = (1+erf(x/sqrt2))/2 the small branch uses
// Phi = 0.5 + (z/2)*S(s) with S = 1+P (ErfS0 = 1+ErfP0), rounded once.
const (
	ErfSplit  = 0.921875 // 0x3f6c0000
	ErfTop    = 4.0
	ErfCenter = 2.3 // 0x40133333

	ErfP0 = 0.128379166     // 0x3e0375d4
	ErfP1 = -0.376126349    // 0xbec093a2
	ErfP2 = 0.112836942     // 0x3de7170e
	ErfP3 = -0.0268593431   // 0xbcdc0820
	ErfP4 = 0.00520089641   // 0x3baa6c48
	ErfP5 = -0.000814116036 // 0xba556a67
	ErfP6 = 8.36355975e-05  // 0x38af6585
	ErfS0 = 1 + ErfP0       // float32: 0x3f906eba

	ErfR0  = 0.226741567     // 0x3e682ef1
	ErfR1  = -0.0853680596   // 0xbdaed573
	ErfR2  = 0.0303952713    // 0x3cf8ff81
	ErfR3  = -0.0103052408   // 0xbc28d750
	ErfR4  = 0.00334516261   // 0x3b5b3a84
	ErfR5  = -0.00104644476  // 0xba8928dc
	ErfR6  = 0.000315998477  // 0x39a5ac99
	ErfR7  = -8.94720215e-05 // 0xb8bba2ed
	ErfR8  = 2.42679853e-05  // 0x37cb931a
	ErfR9  = -8.01975148e-06 // 0xb7068c92
	ErfR10 = 2.72260809e-06  // 0x3636b60d
	ErfR11 = -4.58016473e-07 // 0xb4f5e54e

	Rsqrt2   = 0.707106781186547524400844362104849039 // 1/sqrt(2)
	Rsqrt2Pi = 0.398942280401432677939946059934381868 // 1/sqrt(2*pi)
)

// ErfP lists ErfP0..ErfP6 (lowest degree first).
var ErfP = [...]float32{ErfP0, ErfP1, ErfP2, ErfP3, ErfP4, ErfP5, ErfP6}

// ErfR lists ErfR0..ErfR11 (lowest degree first).
var ErfR = [...]float32{ErfR0, ErfR1, ErfR2, ErfR3, ErfR4, ErfR5, ErfR6, ErfR7, ErfR8, ErfR9, ErfR10, ErfR11}

// ExpC lists the exp polynomial coefficients ExpC2..ExpC6.
var ExpC = [...]float32{ExpC2, ExpC3, ExpC4, ExpC5, ExpC6}
