// Package exitcode maps the errors of the toolkit's commands to the exit codes every binary
// of the toolkit shares: 0 ok, 1 invalid input or failed verification, 2 usage error,
// 3 I/O or environment error. A command marks an error with a code itself (WithCode,
// InvalidInput, Usagef) only where it knows more than the package that made it; otherwise
// the packages' own marks decide (internal/errkind).
package exitcode

import (
	"errors"
	"fmt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// The exit codes shared by aduimport, aduflash, aduagent and aduhub.
const (
	OK      = 0
	Invalid = 1
	Usage   = 2
	IO      = 3
	// Exists: nothing was done because it was done before (an update already imported); a
	// pipeline may treat it as success or not.
	Exists = 4
)

// Error carries the exit code a command's failure should end with.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// WithCode wraps err so that Of returns code for it. A nil err stays nil.
func WithCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Err: err}
}

// InvalidInput marks err as invalid input or a failed verification (exit 1).
func InvalidInput(err error) error { return WithCode(Invalid, err) }

// Usagef builds a usage error (exit 2).
func Usagef(format string, args ...any) error {
	return WithCode(Usage, fmt.Errorf(format, args...))
}

// Of returns the exit code for err: 0 for nil; the code of the outermost *Error in its chain;
// else what the packages that made the error say it is about (errkind.Of): Input 1, Usage
// 2, Environment 3, Exists 4; and IO for anything unmarked (a file that cannot be read, a full disk).
func Of(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch errkind.Of(err) {
	case errkind.Input:
		return Invalid
	case errkind.Usage:
		return Usage
	case errkind.Exists:
		return Exists
	}
	return IO
}
