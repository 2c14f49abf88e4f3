// Package synth is Cairn's verifiable synthetic-data tasks: problems a
// generator makes from a seed, solutions written as text a model can
// learn, and an exact, cheap verifier that accepts a solution only when
// it is right. Anyone can re-verify a solution, so generation can be
// done by untrusted workers and paid per verified sample.
//
// The task family is the Countdown numbers game with worked steps: given
// numbers and a target, reach the target with +, −, × and ÷, each given
// number used at most once, every intermediate result a positive integer
// (subtraction only of a smaller number from a larger, division only when
// exact), one step a line of the form "50-25=25". The difficulty is the
// count of given numbers (3 to 6) and their range. Arithmetic is exact
// integer arithmetic with overflow checks; no floating point is involved.
//
// Like every protocol package it is deterministic: a problem is a
// function of (seed, index, difficulty), and verification is a function of
// the problem and the text.
package synth
