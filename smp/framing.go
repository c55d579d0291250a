package smp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
)

// DefaultLineSize is the longest serial line (markers and newline included) sent by default:
// the frame limit of MCUboot's serial recovery and Zephyr's console transport (127 bytes,
// so 124 base64 characters).
const DefaultLineSize = 127

// minLineSize fits the two marker bytes, one base64 quad and the newline.
const minLineSize = 7

// Line markers of mcumgr's console framing.
var (
	firstMarker = []byte{0x06, 0x09}
	contMarker  = []byte{0x04, 0x14}
)

// AppendFrame appends to dst the serial lines that carry pkt: base64 of the packet's length
// (big-endian, the CRC included), the packet and its CRC-16/XMODEM, cut into lines of at most
// lineSize bytes (0: DefaultLineSize), each a whole number of base64 quads after its marker
// and ended by a newline.
func AppendFrame(dst, pkt []byte, lineSize int) []byte {
	if lineSize <= 0 {
		lineSize = DefaultLineSize
	}
	lineSize = max(lineSize, minLineSize)
	raw := make([]byte, 2, len(pkt)+4)
	binary.BigEndian.PutUint16(raw, uint16(len(pkt)+2))
	raw = append(raw, pkt...)
	raw = binary.BigEndian.AppendUint16(raw, crc16(pkt))
	text := base64.StdEncoding.AppendEncode(nil, raw)
	per := (lineSize - 3) / 4 * 4
	for i := 0; i < len(text); i += per {
		if i == 0 {
			dst = append(dst, firstMarker...)
		} else {
			dst = append(dst, contMarker...)
		}
		dst = append(dst, text[i:min(i+per, len(text))]...)
		dst = append(dst, '\n')
	}
	return dst
}

// Reassembler turns serial lines back into SMP packets, whatever the sender's line length.
// Lines that do not start with a marker are console output and are skipped.
type Reassembler struct {
	text   []byte // base64 characters not decoded yet (less than a quad)
	buf    []byte // decoded bytes of the packet in progress: length, packet, CRC
	active bool
}

// Line takes one line (with or without its newline) and returns a whole packet (header and
// body, without length and CRC) when the line completes one, or nil. An error (ErrFrame)
// says what was wrong with the frame in progress, which is dropped.
func (r *Reassembler) Line(line []byte) ([]byte, error) {
	line = bytes.TrimRight(line, "\r\n")
	switch {
	case bytes.HasPrefix(line, firstMarker):
		r.reset()
		r.active = true
	case bytes.HasPrefix(line, contMarker):
		if !r.active {
			return nil, fmt.Errorf("%w: a continuation line without a first line", ErrFrame)
		}
	default:
		return nil, nil
	}
	pkt, err := r.add(line[2:])
	if err != nil || pkt != nil {
		r.reset()
	}
	return pkt, err
}

func (r *Reassembler) reset() { r.text, r.buf, r.active = r.text[:0], r.buf[:0], false }

// add decodes a line's base64 characters and returns the packet once its length is there.
func (r *Reassembler) add(chars []byte) ([]byte, error) {
	r.text = append(r.text, chars...)
	n := len(r.text) / 4 * 4
	var err error
	if r.buf, err = base64.StdEncoding.AppendDecode(r.buf, r.text[:n]); err != nil {
		return nil, fmt.Errorf("%w: bad base64: %w", ErrFrame, err)
	}
	r.text = append(r.text[:0], r.text[n:]...)
	if len(r.buf) < 2 {
		return nil, nil
	}
	total := int(binary.BigEndian.Uint16(r.buf))
	switch got := len(r.buf) - 2; {
	case total < HeaderSize+2:
		return nil, fmt.Errorf("%w: length %d is shorter than a header and a CRC", ErrFrame, total)
	case got > total:
		return nil, fmt.Errorf("%w: %d bytes after a length of %d", ErrFrame, got, total)
	case got < total || len(r.text) > 0:
		return nil, nil
	}
	body := r.buf[2:]
	if crc16(body) != 0 {
		return nil, fmt.Errorf("%w: CRC %#04x does not match the packet's %#04x", ErrFrame,
			binary.BigEndian.Uint16(body[len(body)-2:]), crc16(body[:len(body)-2]))
	}
	return bytes.Clone(body[:len(body)-2]), nil
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial 0, no reflection), which mcumgr calls
// crc16_ccitt. Over a packet followed by its big-endian CRC it is 0.
func crc16(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c<<8 ^ crcTable[byte(c>>8)^x]
	}
	return c
}
