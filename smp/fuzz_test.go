package smp

import (
	"bytes"
	"testing"
)

// FuzzReassemble feeds arbitrary serial input, line by line, to the reassembler: it never
// panics, and every packet it returns passes its CRC (re-framing it gives it back).
func FuzzReassemble(f *testing.F) {
	f.Add(AppendFrame(nil, EncodePacket(Header{Op: OpReadRsp, Group: 1}, []byte{0xbf, 0x62, 'r', 'c', 0x00, 0xff}), 0))
	f.Add([]byte("\x06\x09AAo=\n\x04\x14QUJD\nnoise\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var ra Reassembler
		for _, l := range bytes.SplitAfter(in, []byte("\n")) {
			p, err := ra.Line(l)
			if err != nil && p != nil {
				t.Fatal("a packet and an error")
			}
			if p != nil {
				var ra2 Reassembler
				if q, err := ra2.Line(AppendFrame(nil, p, 1<<20)); err != nil || !bytes.Equal(q, p) {
					t.Fatalf("re-framed packet: %v", err)
				}
			}
		}
	})
}

// FuzzDecodeReply decodes arbitrary packets as every reply type the client reads: errors,
// never panics.
func FuzzDecodeReply(f *testing.F) {
	f.Add(EncodePacket(Header{Op: OpReadRsp, Group: 1}, []byte{0xa1, 0x66, 'i', 'm', 'a', 'g', 'e', 's', 0x80}))
	f.Add(EncodePacket(Header{Op: OpWriteRsp, Group: 1, ID: 1}, []byte{0xbf, 0x62, 'r', 'c', 0x00, 0x63, 'o', 'f', 'f', 0x19, 0x01, 0x00, 0xff}))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		_, body, err := DecodePacket(pkt)
		if err != nil {
			return
		}
		var (
			l  imageList
			u  uploadRsp
			p  Params
			si struct {
				Images []SlotInfo `cbor:"images"`
			}
		)
		for _, rsp := range []any{&l, &u, &p, &si, nil} {
			_ = decodeReply("fuzz", body, rsp)
		}
	})
}
