package dps

import (
	"fmt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors. Returned errors wrap these; test with errors.Is.
var (
	// ErrInvalidConfig reports an unusable Config (missing id scope, bad key, …).
	ErrInvalidConfig = errkind.New(errkind.Input, "dps: invalid config")
	// ErrConnect reports a failed connection to DPS (network, TLS, refused CONNECT).
	ErrConnect = errkind.New(errkind.Environment, "dps: connect failed")
	// ErrMalformedReply reports a reply that cannot be used.
	ErrMalformedReply = errkind.New(errkind.Environment, "dps: malformed reply")
	// ErrRefused is wrapped by a *RefusedError: DPS answered with an error status, or the
	// registration ended failed or disabled.
	ErrRefused = errkind.New(errkind.Environment, "dps: registration refused")
	// ErrTimeout reports a reply that did not come in time.
	ErrTimeout = errkind.New(errkind.Environment, "dps: timed out")
	// ErrInvalidCache reports a stored assignment that cannot be read back.
	ErrInvalidCache = errkind.New(errkind.Environment, "dps: invalid stored assignment")
)

// RefusedError is a registration DPS refused: an error status (401 unknown or wrong
// credentials, 404, 429 after the retries, …) or an operation that ended failed/disabled.
type RefusedError struct {
	Status    int    // the reply's status
	OpStatus  string // the operation's status ("failed", "disabled"), if it got that far
	ErrorCode int64
	Message   string
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("dps: registration refused: status %d", e.Status)
	if e.OpStatus != "" {
		s += " (" + e.OpStatus + ")"
	}
	if e.ErrorCode != 0 {
		s += fmt.Sprintf(", error %d", e.ErrorCode)
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }
