package node

// Behaviour makes a worker misbehave, for the experiments and the demo's
// adversaries: a worker node that has one trains as many inner steps as
// Steps says, then submits (and commits to) whatever Forge returns in
// place of its honest contribution. A worker without one is honest. The
// node calls both from its run loop, never concurrently.
type Behaviour interface {
	// Steps is how many inner steps the worker really trains when an
	// honest worker would train steps (1..H); the answer is clamped to
	// 1..steps.
	Steps(round, steps int) int
	// Forge returns the payload to submit and the tokens to claim, given
	// the honest payload of what was trained and its tokens. It may
	// return its arguments unchanged.
	Forge(round int, honest []byte, tokens int) (payload []byte, claimed int)
}
