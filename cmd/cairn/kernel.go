package main

import (
	"flag"
	"slices"
	"strings"

	"github.com/cairnlabs/cairn/kernels"
	"github.com/cairnlabs/cairn/vecmath"
)

// kernelFlag binds --kernel, which picks the process's kernel path.
func kernelFlag(fs *flag.FlagSet) *string {
	return fs.String("kernel", "", "kernel path for the matrix products and vector kernels: "+strings.Join(kernelPaths(), ", ")+
		" (default: the fastest exact float32 path this CPU has; "+kernels.AMX+", where listed, multiplies in bfloat16 on AMX tiles with float32 sums, master weights and optimizer); paths differ by rounding, which training amplifies")
}

// exactPaths are the float32 paths this CPU can run both the matrix
// products and the vector kernels on, fastest first.
func exactPaths() []string {
	var out []string
	for _, k := range kernels.Impls() {
		if slices.Contains(vecmath.Impls(), k) {
			out = append(out, k)
		}
	}
	return out
}

// kernelPaths are exactPaths, then the bfloat16 path where the CPU has AMX
// (its vector kernels are the default ones).
func kernelPaths() []string {
	out := exactPaths()
	if kernels.HasAMX() {
		out = append(out, kernels.AMX)
	}
	return out
}

// selectKernel switches the process to kernel path name ("" leaves the
// default); a path this CPU lacks is bad input. Call it at start-up,
// before anything computes.
func selectKernel(name string) error {
	if name == "" {
		return nil
	}
	if !slices.Contains(kernelPaths(), name) {
		return badInput("--kernel %s: not available on this CPU (it has %s)", name, strings.Join(kernelPaths(), ", "))
	}
	if err := kernels.SetImpl(name); err != nil {
		return badInput("--kernel %s: %v", name, err)
	}
	if name == kernels.AMX {
		return nil
	}
	if err := vecmath.SetImpl(name); err != nil {
		return badInput("--kernel %s: %v", name, err)
	}
	return nil
}
