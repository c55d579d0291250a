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

// grubBooter resets a board that boots with examples/grub: the simulator or real GRUB.
type grubBooter interface {
	boot(t *testing.T) bootloader.Bank
}

type simGRUB struct{ d *sim.GRUB }

func (s simGRUB) boot(t *testing.T) bootloader.Bank {
	t.Helper()
	b, err := s.d.Reset()
	if err != nil {
		t.Fatal(err)
	}
	return b.Bank
}

func grubBoard(t *testing.T) (*bootloader.GRUB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grubenv")
	// A board image has an empty block (grub-install makes it; GRUB cannot create files).
	if err := grubenv.WriteFile(path, grubenv.New()); err != nil {
		t.Fatal(err)
	}
	g, err := bootloader.NewGRUB(grubenv.Store{Path: path}, bootloader.GRUBConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return g, path
}

func grubState(t *testing.T, g *bootloader.GRUB) bootloader.State {
	t.Helper()
	st, err := g.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestGRUBCycle(t *testing.T) {
	g, path := grubBoard(t)
	testGRUBCycle(t, g, path, simGRUB{&sim.GRUB{Env: grubenv.Store{Path: path}}})
}

func testGRUBCycle(t *testing.T, g *bootloader.GRUB, path string, d grubBooter) {
	if st := grubState(t, g); st.Primary != "A" || st.Pending != "" {
		t.Fatalf("fresh: %+v", st)
	}
	// A confirmed bank boots as long as every boot is confirmed.
	for i := 0; i < 3; i++ {
		if b := d.boot(t); b != "A" {
			t.Fatalf("boot %d: %s", i, b)
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
	if b := d.boot(t); b != "B" {
		t.Fatalf("trial boot: %s", b)
	}
	if st := grubState(t, g); st.Pending != "B" || st.AttemptsLeft != 0 {
		t.Fatalf("during the trial boot: %+v", st)
	}
	// The agent confirms B and raises the anti-rollback floor in the same write; GRUB's
	// own writes (save_env of the TRY flags) from here on keep it.
	if err := g.ConfirmRaising("B", bootloader.Floors{"rootfs": 5}); err != nil {
		t.Fatal(err)
	}
	if st := grubState(t, g); st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
		t.Fatalf("after Confirm(B): %+v", st)
	}
	if b := d.boot(t); b != "B" {
		t.Fatalf("after confirm: %s", b)
	}
	if err := g.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	// Trial of A, not confirmed (a hang): the next boot falls back to B.
	if err := g.MarkPending("A"); err != nil {
		t.Fatal(err)
	}
	if b := d.boot(t); b != "A" {
		t.Fatalf("trial of A: %s", b)
	}
	if b := d.boot(t); b != "B" {
		t.Fatalf("unconfirmed trial must fall back to B, booted %s", b)
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
		if b := d.boot(t); b != "B" {
			t.Fatalf("boot %d after MarkBad(A): %s", i, b)
		}
		if err := g.Confirm("B"); err != nil {
			t.Fatal(err)
		}
	}
	if f, err := g.Floors(); err != nil || f["rootfs"] != 5 {
		t.Fatalf("floors after the boots: %v, %v", f, err)
	}
	// The block stays one grub-editenv reads.
	if tool, err := exec.LookPath("grub-editenv"); err != nil {
		peers.Missing(t, "grub-editenv (apt-get install grub-common): %v", err)
	} else {
		out, err := exec.Command(tool, path, "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "A_OK=0") || !strings.Contains(string(out), "ORDER=A B") ||
			!strings.Contains(string(out), bootloader.VarSecFloor+"=rootfs:5") {
			t.Fatalf("grub-editenv list: %v\n%s", err, out)
		}
	}
}

func TestGRUBRefusals(t *testing.T) {
	g, _ := grubBoard(t)
	for _, c := range []struct {
		op   func(bootloader.Bank) error
		s    bootloader.Bank
		want error
	}{
		{g.MarkPending, "A", bootloader.ErrPrimaryBank},
		{g.MarkPending, "X", bootloader.ErrUnknownBank},
		{g.Confirm, "B", bootloader.ErrNotPrimary},
		{g.MarkBad, "A", bootloader.ErrPrimaryBank},
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
	_, path := grubBoard(t)
	if err := (grubenv.Store{Path: path}).Update(map[string]string{"A_OK": "yes"}, nil); err != nil {
		t.Fatal(err)
	}
	g2, _ := bootloader.NewGRUB(grubenv.Store{Path: path}, bootloader.GRUBConfig{})
	if _, err := g2.State(); !errors.Is(err, bootloader.ErrBadState) {
		t.Fatalf("A_OK=yes: %v", err)
	}
}
