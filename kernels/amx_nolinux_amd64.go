//go:build !linux

package kernels

// requestAMX reports false: the AMX path is enabled on Linux only.
func requestAMX() bool { return false }
