package smp

import (
	"encoding/binary"
	"fmt"
)

// Op is a packet's operation.
type Op uint8

// Operations.
const (
	OpRead     Op = 0
	OpReadRsp  Op = 1
	OpWrite    Op = 2
	OpWriteRsp Op = 3
)

// Groups and commands this package uses.
const (
	GroupOS    = 0
	GroupImage = 1

	IDEcho   = 0 // os: echo
	IDReset  = 5 // os: reset
	IDParams = 6 // os: mcumgr params
	IDInfo   = 7 // os: OS/application info

	IDState    = 0 // image: state read/write
	IDUpload   = 1 // image: upload
	IDErase    = 5 // image: erase
	IDSlotInfo = 6 // image: slot info
)

// HeaderSize is the size of an SMP header.
const HeaderSize = 8

// MaxPacket is the largest packet the header's 16-bit length allows.
const MaxPacket = HeaderSize + 0xffff

// Header is an SMP packet header.
type Header struct {
	Op      Op
	Version uint8 // 0: SMP version 1, 1: SMP version 2
	Flags   uint8
	Len     uint16 // length of the CBOR body
	Group   uint16
	Seq     uint8
	ID      uint8
}

// EncodePacket returns the packet of h and body (h.Len is set from body).
func EncodePacket(h Header, body []byte) []byte {
	b := make([]byte, HeaderSize, HeaderSize+len(body))
	b[0] = byte(h.Version&3)<<3 | byte(h.Op&7)
	b[1] = h.Flags
	binary.BigEndian.PutUint16(b[2:], uint16(len(body)))
	binary.BigEndian.PutUint16(b[4:], h.Group)
	b[6], b[7] = h.Seq, h.ID
	return append(b, body...)
}

// DecodePacket splits a packet into its header and body, checking that the header's length
// is the body's.
func DecodePacket(p []byte) (Header, []byte, error) {
	if len(p) < HeaderSize {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrPacket, len(p), HeaderSize)
	}
	h := Header{Op: Op(p[0] & 7), Version: p[0] >> 3 & 3, Flags: p[1], Len: binary.BigEndian.Uint16(p[2:]),
		Group: binary.BigEndian.Uint16(p[4:]), Seq: p[6], ID: p[7]}
	if int(h.Len) != len(p)-HeaderSize {
		return h, nil, fmt.Errorf("%w: header says %d body bytes, the packet has %d", ErrPacket, h.Len, len(p)-HeaderSize)
	}
	return h, p[HeaderSize:], nil
}
