package bootloader_test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/grubenv"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/internal/peers"
)

func grubBoard(t *testing.T) (*bootloader.GRUB, *sim.GRUB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grubenv")
	store := grubenv.Store{Path: path}
	g, err := bootloader.NewGRUB(store, bootloader.GRUBConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return g, &sim.GRUB{Env: store}, path
}

func grubState(t *testing.T, g *bootloader.GRUB) bootloader.State {
	t.Helper()
	st, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func grubBoot(t *testing.T, d *sim.GRUB) sim.Boot {
	t.Helper()
	b, err := d.Reset()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestGRUBCycle(t *testing.T) {
	g, d, path := grubBoard(t)
	if st := grubState(t, g); st.Primary != "A" || st.Pending != "" {
		t.Fatalf("fresh: %+v", st)
	}
	// A confirmed bank boots as long as every boot is confirmed.
	for i := 0; i < 3; i++ {
		if b := grubBoot(t, d); b.Slot != "A" {
			t.Fatalf("boot %d: %+v", i, b)
		}
		if err := g.Confirm("A"); err != nil {
			t.Fatal(err)
		}
	}
	// Trial of B: one attempt.
	if err := g.MarkPending("B"); err != nil {
		t.Fatal(err)
	}
	if st := grubState(t, g); st.Pending != "B" || st.AttemptsLeft != 1 || st.Fallback != "A" {
		t.Fatalf("after MarkPending(B): %+v", st)
	}
	if b := grubBoot(t, d); b.Slot != "B" {
		t.Fatalf("trial boot: %+v", b)
	}
	if st := grubState(t, g); st.Pending != "B" || st.AttemptsLeft != 0 {
		t.Fatalf("during the trial boot: %+v", st)
	}
	if err := g.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	if st := grubState(t, g); st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
		t.Fatalf("after Confirm(B): %+v", st)
	}
	if b := grubBoot(t, d); b.Slot != "B" {
		t.Fatalf("after confirm: %+v", b)
	}
	if err := g.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	// Trial of A, not confirmed (a hang): the next boot falls back to B.
	if err := g.MarkPending("A"); err != nil {
		t.Fatal(err)
	}
	if b := grubBoot(t, d); b.Slot != "A" {
		t.Fatalf("trial of A: %+v", b)
	}
	if b := grubBoot(t, d); b.Slot != "B" || !b.Rollback {
		t.Fatalf("unconfirmed trial must fall back to B: %+v", b)
	}
	// The agent on B sees A still named as the trial with no attempt left, and marks it bad.
	if st := grubState(t, g); st.Pending != "A" || st.AttemptsLeft != 0 {
		t.Fatalf("after the fallback: %+v", st)
	}
	if err := g.MarkBad("A"); err != nil {
		t.Fatal(err)
	}
	if st := grubState(t, g); st.Primary != "B" || st.Pending != "" || !st.IsBad("A") {
		t.Fatalf("after MarkBad(A): %+v", st)
	}
	if err := g.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if b := grubBoot(t, d); b.Slot != "B" {
			t.Fatalf("boot %d after MarkBad(A): %+v", i, b)
		}
		if err := g.Confirm("B"); err != nil {
			t.Fatal(err)
		}
	}
	// The block stays one grub-editenv reads.
	if tool, err := exec.LookPath("grub-editenv"); err != nil {
		peers.Missing(t, "grub-editenv (apt-get install grub-common): %v", err)
	} else {
		out, err := exec.Command(tool, path, "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "A_OK=0") || !strings.Contains(string(out), "ORDER=A B") {
			t.Fatalf("grub-editenv list: %v\n%s", err, out)
		}
	}
}

func TestGRUBRefusals(t *testing.T) {
	g, _, _ := grubBoard(t)
	for _, c := range []struct {
		op   func(bootloader.Slot) error
		s    bootloader.Slot
		want error
	}{
		{g.MarkPending, "A", bootloader.ErrPrimarySlot},
		{g.MarkPending, "X", bootloader.ErrUnknownSlot},
		{g.Confirm, "B", bootloader.ErrNotPrimary},
		{g.MarkBad, "A", bootloader.ErrPrimarySlot},
	} {
		if err := c.op(c.s); !errors.Is(err, c.want) {
			t.Errorf("%q: %v, want %v", c.s, err, c.want)
		}
	}
	// A bank with no good fallback cannot be put on trial.
	if err := g.MarkBad("B"); err != nil {
		t.Fatal(err)
	}
	if err := g.MarkPending("B"); err != nil {
		t.Fatal(err) // A is the fallback and OK
	}
	_, _, path := grubBoard(t)
	if err := (grubenv.Store{Path: path}).Update(map[string]string{"A_OK": "yes"}, nil); err != nil {
		t.Fatal(err)
	}
	g2, _ := bootloader.NewGRUB(grubenv.Store{Path: path}, bootloader.GRUBConfig{})
	if _, err := g2.State(); !errors.Is(err, bootloader.ErrBadState) {
		t.Fatalf("A_OK=yes: %v", err)
	}
}
