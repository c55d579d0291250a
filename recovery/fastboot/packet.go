package fastboot

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// Packet ids of the UDP transport.
const (
	IDError    = 0x00
	IDQuery    = 0x01
	IDInit     = 0x02
	IDFastboot = 0x03
)

// Protocol constants.
const (
	// DefaultPort is the UDP port of a fastboot device.
	DefaultPort = 5554
	// HeaderSize is the size of a packet's header: id, flags, sequence number.
	HeaderSize = 4
	// FlagContinuation marks a packet whose data goes on in the next one.
	FlagContinuation = 0x01
	// MinPacketSize is the smallest packet size a device may offer, and the largest of the
	// query and init packets.
	MinPacketSize = 512
	// MaxCommandSize is the longest command (and response) of the fastboot protocol.
	MaxCommandSize = 64
	// ProtocolVersion is the version of the UDP transport this client speaks.
	ProtocolVersion = 1
)

// Header is the header of a packet.
type Header struct {
	ID    byte
	Flags byte
	Seq   uint16
}

// ParsePacket splits a packet into its header and data. It refuses a packet shorter than
// the header and one with reserved flag bits set.
func ParsePacket(b []byte) (Header, []byte, error) {
	if len(b) < HeaderSize {
		return Header{}, nil, fmt.Errorf("%w: a %d-byte packet, shorter than the %d-byte header", ErrProtocol, len(b), HeaderSize)
	}
	h := Header{ID: b[0], Flags: b[1], Seq: binary.BigEndian.Uint16(b[2:4])}
	if h.Flags&^FlagContinuation != 0 {
		return Header{}, nil, fmt.Errorf("%w: packet %d has reserved flag bits set (flags %#02x)", ErrProtocol, h.Seq, h.Flags)
	}
	return h, b[HeaderSize:], nil
}

// AppendPacket appends a packet of header h and data to b.
func AppendPacket(b []byte, h Header, data []byte) []byte {
	b = append(b, h.ID, h.Flags)
	b = binary.BigEndian.AppendUint16(b, h.Seq)
	return append(b, data...)
}

// Kinds of fastboot responses.
const (
	Okay = "OKAY"
	Fail = "FAIL"
	Data = "DATA"
	Info = "INFO"
)

// Response is one response of the device to a command: its kind (Okay, Fail, Data, Info)
// and its message, control characters replaced.
type Response struct {
	Kind    string
	Message string
}

// ParseResponse parses a response of the fastboot protocol: one of the four kinds, then a
// message. A DATA response must carry an 8-digit hexadecimal size.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 4 {
		return Response{}, fmt.Errorf("%w: response %q is not OKAY, FAIL, DATA or INFO", ErrProtocol, Printable(string(b)))
	}
	r := Response{Kind: string(b[:4]), Message: Printable(string(b[4:]))}
	switch r.Kind {
	case Okay, Fail, Info:
		return r, nil
	case Data:
		if _, err := r.DataSize(); err != nil {
			return Response{}, err
		}
		return r, nil
	}
	return Response{}, fmt.Errorf("%w: response %q is not OKAY, FAIL, DATA or INFO", ErrProtocol, Printable(string(b[:min(len(b), MaxCommandSize)])))
}

// DataSize is the size a DATA response announces.
func (r Response) DataSize() (int64, error) {
	if r.Kind != Data || len(r.Message) != 8 {
		return 0, fmt.Errorf("%w: %q is no DATA response with an 8-digit size", ErrProtocol, r.Kind+r.Message)
	}
	n, err := strconv.ParseUint(r.Message, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: DATA size %q is not hexadecimal", ErrProtocol, r.Message)
	}
	return int64(n), nil
}

// ParseSize parses a size variable as U-Boot writes it ("0x08000000") or in decimal.
func ParseSize(s string) (int64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 63)
	if err != nil {
		return 0, fmt.Errorf("%w: size %q is no number", ErrProtocol, s)
	}
	return int64(n), nil
}

// Printable returns s with control characters and invalid UTF-8 replaced by '.', for
// showing what a device sent.
func Printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return '.'
		}
		return r
	}, s)
}

// checkCommand refuses a command the protocol cannot carry.
func checkCommand(cmd string) error {
	if cmd == "" || len(cmd) > MaxCommandSize {
		return fmt.Errorf("%w: %q is %d bytes; a command has 1 to %d", ErrCommand, Printable(cmd), len(cmd), MaxCommandSize)
	}
	for i := 0; i < len(cmd); i++ {
		if cmd[i] < 0x20 || cmd[i] > 0x7e {
			return fmt.Errorf("%w: %q has a byte that is not printable ASCII at %d", ErrCommand, Printable(cmd), i)
		}
	}
	return nil
}
