package main

import (
	"io"
	"path/filepath"
	"strconv"
)

// runDemo trains the default model (nanoGPT's CPU configuration) on the
// embedded corpus, then samples from it. Until the network lands, that is
// the main job of a node.
func runDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	steps := fs.Int("steps", 2000, "training steps")
	out := fs.String("out", filepath.Join("out", "demo"), "checkpoint directory")
	threads := fs.Int("threads", 0, "threads (default: all cores)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	common := []string{"--threads", strconv.Itoa(*threads)}
	if err := runTrain(append([]string{"--steps", strconv.Itoa(*steps), "--out", *out}, common...), stdout, stderr); err != nil {
		return err
	}
	io.WriteString(stdout, "\nsample:\n")
	return runSample(append([]string{"--ckpt", *out, "--tokens", "400", "--prompt", "ROMEO:"}, common...), stdout, stderr)
}
