// Package errkind lets a package say, where it defines a sentinel error, what the error is
// about: a verdict on the input (Input), a name the caller got wrong (Usage), a thing to
// create that exists already (Exists), or a device, file system, network or peer that failed
// (Environment). Commands turn the kind into an
// exit code (cmd/internal/exitcode) without naming the sentinels.
//
//	ErrBadSignature = errkind.New(errkind.Input, "aduimg: bad signature")
//
// An error type that is matched through an Is method rather than by unwrapping implements
// Marked itself.
package errkind

import (
	"context"
	"errors"
	"io/fs"
	"strconv"
)

// Kind is what an error is about.
type Kind uint8

const (
	// Unmarked: the error says nothing about its kind (most errors of other modules).
	Unmarked Kind = iota
	// Input: a verdict on the input: malformed, refused, or a failed verification.
	Input
	// Usage: the caller named something that does not exist (a slot, a bank).
	Usage
	// Environment: a device, file, network, peer or lock failed, or the caller gave up.
	Environment
	// Cause: a stage's sentinel that always wraps the error that made the stage fail; that
	// error tells the kind.
	Cause
	// Exists: what the caller asked to create exists already (an update imported before), so
	// a pipeline that runs twice can tell "done before" from a failure.
	Exists
)

var names = [...]string{"unmarked", "input", "usage", "environment", "cause", "exists"}

func (k Kind) String() string {
	if int(k) < len(names) {
		return names[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Marked is an error that tells its kind.
type Marked interface {
	error
	ErrorKind() Kind
}

type sentinel struct {
	text string
	kind Kind
}

func (e *sentinel) Error() string   { return e.text }
func (e *sentinel) ErrorKind() Kind { return e.kind }

// New returns a sentinel error with the given text and kind.
func New(k Kind, text string) error { return &sentinel{text: text, kind: k} }

// Of returns the kind of err from every error in its tree: Environment if any is about the
// environment (fs.ErrNotExist, fs.ErrPermission and the context's errors count), else Input
// if any is a verdict on the input, else Usage if any is a usage error, else Unmarked.
// When the environment failed, what was read is no verdict on the input (a chunk that reads
// back wrong from a failing flash says nothing about the image); a name that a verdict wraps
// came from the input, not from the caller (an image for a slot class the device lacks).
func Of(err error) Kind {
	if err == nil {
		return Unmarked
	}
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Environment
	}
	kind := Unmarked
	walk(err, func(e error) {
		if m, ok := e.(Marked); ok {
			if k := m.ErrorKind(); k != Cause && rank(k) > rank(kind) {
				kind = k
			}
		}
	})
	return kind
}

// rank orders the kinds by precedence in Of.
func rank(k Kind) int {
	switch k {
	case Environment:
		return 4
	case Exists:
		return 3
	case Input:
		return 2
	case Usage:
		return 1
	}
	return 0
}

// walk calls f for err and every error it wraps, depth first.
func walk(err error, f func(error)) {
	for err != nil {
		f(err)
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, f)
			}
			return
		default:
			return
		}
	}
}
