//go:build !amd64 && !arm64

package kernels

func available() []impl { return []impl{genericImpl} }
