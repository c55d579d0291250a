package smp

import (
	"fmt"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors.
var (
	// ErrTimeout: the device did not answer a request in time, every time it was sent.
	ErrTimeout = errkind.New(errkind.Environment, "smp: no reply from the device")
	// ErrClosed: the transport was closed or its line went away.
	ErrClosed = errkind.New(errkind.Environment, "smp: transport closed")
	// ErrFrame: a serial line that starts like an SMP frame but does not decode (base64,
	// length, CRC).
	ErrFrame = errkind.New(errkind.Environment, "smp: malformed serial frame")
	// ErrPacket: an SMP packet with a malformed header (too short, wrong length, an
	// operation that is not a reply).
	ErrPacket = errkind.New(errkind.Environment, "smp: malformed packet")
	// ErrReply: a reply whose CBOR does not decode, or that lacks or contradicts what its
	// request needs (an upload offset past the image's end).
	ErrReply = errkind.New(errkind.Environment, "smp: unexpected reply")
	// ErrDevice: the device answered with an error code (*DeviceError).
	ErrDevice = errkind.New(errkind.Environment, "smp: the device refused the request")
	// ErrNotSupported: the device does not implement the command (rc 8, MGMT_ERR_ENOTSUP).
	ErrNotSupported = errkind.New(errkind.Environment, "smp: command not supported by the device")
	// ErrTooLarge: a request does not fit the device's packet size, or an image its slot.
	ErrTooLarge = errkind.New(errkind.Input, "smp: too large")
	// ErrEndpoint: an Endpoint that names no MCU, or two.
	ErrEndpoint = errkind.New(errkind.Usage, "smp: endpoint")
	// ErrMismatch: the device says the uploaded bytes do not match their SHA-256.
	ErrMismatch = errkind.New(errkind.Environment, "smp: the device's copy does not match the image")
)

// Management error codes (mcumgr's MGMT_ERR_*) that callers may test for.
const (
	RCOK           = 0
	RCUnknown      = 1
	RCNoMemory     = 2
	RCInvalid      = 3
	RCTimeout      = 4
	RCNoEntry      = 5
	RCBadState     = 6
	RCMsgSize      = 7
	RCNotSupported = 8
	RCCorrupt      = 9
	RCBusy         = 10
)

var rcNames = map[int]string{
	RCOK: "ok", RCUnknown: "unknown error", RCNoMemory: "out of memory", RCInvalid: "invalid argument",
	RCTimeout: "timeout", RCNoEntry: "no such entry", RCBadState: "bad state", RCMsgSize: "message too large",
	RCNotSupported: "not supported", RCCorrupt: "corrupt", RCBusy: "busy", 11: "access denied",
	12: "protocol version too old", 13: "protocol version too new",
}

// DeviceError is a device's error answer: Rc is the SMP version 1 code (or the generic code
// of a version 2 reply), Group and GroupRc a version 2 group error, Reason the optional "rsn".
type DeviceError struct {
	Command string // e.g. "image upload"
	Rc      int
	Group   int
	GroupRc int
	Reason  string
}

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("smp: %s: the device answered rc %d", e.Command, e.Rc)
	if name, ok := rcNames[e.Rc]; ok {
		s += " (" + name + ")"
	}
	if e.GroupRc != 0 {
		s = fmt.Sprintf("smp: %s: the device answered error %d of group %d", e.Command, e.GroupRc, e.Group)
	}
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Is makes errors.Is(err, ErrDevice) true, and ErrNotSupported for rc 8.
func (e *DeviceError) Is(target error) bool {
	return target == ErrDevice || (target == ErrNotSupported && e.Rc == RCNotSupported)
}

// ErrorKind: a device's refusal is about the device, not the caller's input.
func (e *DeviceError) ErrorKind() errkind.Kind { return errkind.Environment }
