package bootloader_test

import (
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/slots"
)

// Banks tells the slots layer the primary bank, and the pending one during a trial, of the
// backend's state (slots.Layout uses it with active = "bootloader").
func TestBanksForSlots(t *testing.T) {
	g, _ := grubBoard(t)
	var bs slots.BootState = bootloader.Banks{Backend: g}
	primary, pending, err := bs.BootBanks()
	if err != nil || primary != "A" || pending != "" {
		t.Fatalf("fresh board: primary %q, pending %q, %v", primary, pending, err)
	}
	if err := g.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	if primary, pending, err = bs.BootBanks(); err != nil || primary != "B" || pending != "B" {
		t.Fatalf("B pending: primary %q, pending %q, %v", primary, pending, err)
	}
}
