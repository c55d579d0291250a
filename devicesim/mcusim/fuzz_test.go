package mcusim_test

import (
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/smp"
)

// FuzzHandle sends arbitrary packets to the simulated MCU's SMP server: it answers or stays
// silent, and never panics.
func FuzzHandle(f *testing.F) {
	seed := func(op smp.Op, group uint16, id uint8, body any) {
		b, _ := cbor.Marshal(body)
		f.Add(smp.EncodePacket(smp.Header{Op: op, Group: group, ID: id}, b))
	}
	seed(smp.OpWrite, smp.GroupImage, smp.IDUpload, map[string]any{"off": 0, "len": 40, "sha": make([]byte, 32), "data": make([]byte, 40)})
	seed(smp.OpWrite, smp.GroupImage, smp.IDState, map[string]any{"hash": make([]byte, 32), "confirm": true})
	seed(smp.OpWrite, smp.GroupImage, smp.IDErase, map[string]any{"slot": 1})
	seed(smp.OpWrite, smp.GroupOS, smp.IDEcho, map[string]any{"d": "hi"})
	m, err := mcusim.New(mcusim.Config{SlotSize: 16 << 10})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		if out := m.Handle(pkt); out != nil {
			if _, _, err := smp.DecodePacket(out); err != nil {
				t.Fatalf("reply %x: %v", out, err)
			}
		}
	})
}
