package smp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

func TestCRC16(t *testing.T) {
	// CRC-16/XMODEM's check value.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Fatalf("crc16 = %#04x, want 0x31c3", got)
	}
}

// lines splits framed bytes into their lines.
func lines(b []byte) [][]byte {
	return bytes.SplitAfter(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// reassemble feeds lines to a Reassembler and returns the last packet it gave.
func reassemble(t *testing.T, in [][]byte) []byte {
	t.Helper()
	var ra Reassembler
	var got []byte
	for _, l := range in {
		p, err := ra.Line(l)
		if err != nil {
			t.Fatal(err)
		}
		if p != nil {
			got = p
		}
	}
	return got
}

func TestFrameRoundTrip(t *testing.T) {
	pkt := EncodePacket(Header{Op: OpWrite, Group: GroupImage, ID: IDUpload, Seq: 7}, bytes.Repeat([]byte{0xa5, 0x00, 0x5a}, 200))
	for _, size := range []int{0, 7, 16, 128, 127, 500} {
		framed := lines(AppendFrame(nil, pkt, size))
		for i, l := range framed {
			if size > 0 && len(l) > size {
				t.Fatalf("line size %d: line %d is %d bytes", size, i, len(l))
			}
			want := contMarker
			if i == 0 {
				want = firstMarker
			}
			if !bytes.HasPrefix(l, want) {
				t.Fatalf("line size %d: line %d starts %x", size, i, l[:2])
			}
		}
		if got := reassemble(t, framed); !bytes.Equal(got, pkt) {
			t.Fatalf("line size %d: reassembled %d bytes, want the %d-byte packet", size, len(got), len(pkt))
		}
	}
}

// A reply cut into lines at places that are not quads (another sender's line length), with
// console output between the lines, is still reassembled.
func TestReassembleOddSplits(t *testing.T) {
	pkt := EncodePacket(Header{Op: OpReadRsp, Group: GroupOS, Seq: 1}, []byte{0xa1, 0x61, 0x72, 0x62, 0x68, 0x69})
	one := lines(AppendFrame(nil, pkt, 1000))[0]
	text := bytes.TrimSuffix(one[2:], []byte("\n"))
	in := [][]byte{append([]byte{6, 9}, text[:5]...), []byte("uart: console noise\r\n"), append([]byte{4, 20}, text[5:]...)}
	if got := reassemble(t, in); !bytes.Equal(got, pkt) {
		t.Fatalf("got %x, want %x", got, pkt)
	}
}

func TestReassembleErrors(t *testing.T) {
	pkt := EncodePacket(Header{Op: OpReadRsp}, []byte{0xa0})
	good := AppendFrame(nil, pkt, 0)
	raw := append([]byte{0, byte(len(pkt) + 2)}, pkt...)
	raw = append(raw, 0, 0) // a wrong CRC
	for name, l := range map[string][]byte{
		"crc":      append(append([]byte{6, 9}, base64.StdEncoding.EncodeToString(raw)...), '\n'),
		"base64":   []byte("\x06\x09AB$D\n"),
		"length":   append(append([]byte{6, 9}, base64.StdEncoding.EncodeToString([]byte{0, 3, 1, 2, 3, 4})...), '\n'),
		"too long": append(append([]byte{6, 9}, base64.StdEncoding.EncodeToString(append([]byte{0, 10}, make([]byte, 13)...))...), '\n'),
		"orphan":   []byte("\x04\x14AAAA\n"),
	} {
		var ra Reassembler
		p, err := ra.Line(l)
		if !errors.Is(err, ErrFrame) || p != nil {
			t.Errorf("%s: %x, %v; want ErrFrame", name, p, err)
		}
		if p, err := ra.Line(good); err != nil || !bytes.Equal(p, pkt) {
			t.Errorf("%s: the next good frame: %x, %v", name, p, err)
		}
	}
}

func TestDecodePacket(t *testing.T) {
	pkt := EncodePacket(Header{Op: OpWriteRsp, Version: 1, Flags: 2, Group: 0x1234, Seq: 9, ID: 6}, []byte{0xa0})
	h, body, err := DecodePacket(pkt)
	if err != nil || h != (Header{Op: OpWriteRsp, Version: 1, Flags: 2, Len: 1, Group: 0x1234, Seq: 9, ID: 6}) || !bytes.Equal(body, []byte{0xa0}) {
		t.Fatalf("%+v %x %v", h, body, err)
	}
	for _, bad := range [][]byte{pkt[:7], pkt[:8], append(bytes.Clone(pkt), 0)} {
		if _, _, err := DecodePacket(bad); !errors.Is(err, ErrPacket) {
			t.Errorf("%x: %v, want ErrPacket", bad, err)
		}
	}
}

func TestDecodeReply(t *testing.T) {
	for name, c := range map[string]struct {
		body []byte
		want error
	}{
		"v1 rc":         {[]byte{0xa1, 0x62, 'r', 'c', 0x08}, ErrNotSupported},
		"v2 err":        {[]byte{0xa1, 0x63, 'e', 'r', 'r', 0xa2, 0x65, 'g', 'r', 'o', 'u', 'p', 0x01, 0x62, 'r', 'c', 0x02}, ErrDevice},
		"not a map":     {[]byte{0x01}, ErrReply},
		"truncated":     {[]byte{0xa1, 0x62, 'r'}, ErrReply},
		"wrong type":    {[]byte{0xa1, 0x63, 'o', 'f', 'f', 0x61, 'x'}, ErrReply},
		"indefinite ok": {[]byte{0xbf, 0x63, 'o', 'f', 'f', 0x05, 0xff}, nil},
	} {
		var rsp uploadRsp
		err := decodeReply("test", c.body, &rsp)
		if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}
