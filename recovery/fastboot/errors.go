package fastboot

import (
	"fmt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors; each says what it is about (errkind).
var (
	// ErrNoResponse: the device did not answer a packet sent as often as Options allow.
	ErrNoResponse = errkind.New(errkind.Environment, "fastboot: no answer from the device")
	// ErrProtocol: the device answered what the protocol does not allow (see the package
	// doc), or sent an error packet.
	ErrProtocol = errkind.New(errkind.Environment, "fastboot: protocol error")
	// ErrCommand: a command the protocol cannot carry (empty, longer than 64 bytes, not
	// printable ASCII), e.g. a partition or variable name given by the user.
	ErrCommand = errkind.New(errkind.Usage, "fastboot: invalid command")
	// ErrTooLarge: the payload is larger than the device's download buffer, the partition,
	// or what a download can announce (4 GiB - 1); or it is empty, which U-Boot refuses.
	ErrTooLarge = errkind.New(errkind.Input, "fastboot: image size not accepted")
	// ErrAborted: the payload could not be read in full (a verifying reader refused it, the
	// file ended early): the download was abandoned and nothing flashed. It wraps the
	// reader's error, which tells its kind.
	ErrAborted = errkind.New(errkind.Cause, "fastboot: download aborted, nothing flashed")
)

// FailError is a FAIL response of the device to a command.
type FailError struct {
	Command string // the command, e.g. "flash:rootfs_a"
	Message string // the device's reason, control characters replaced
}

func (e *FailError) Error() string {
	return fmt.Sprintf("fastboot: the device failed %q: %s", e.Command, e.Message)
}

// ErrorKind: the device refused or could not carry out the command.
func (e *FailError) ErrorKind() errkind.Kind { return errkind.Environment }
