//go:build !amd64 && !arm64

package vecmath

// available lists the implementations usable on this CPU, best first.
func available() []*kernels {
	return []*kernels{&genericKernels}
}
