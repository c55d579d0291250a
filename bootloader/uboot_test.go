package bootloader_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
)

var presets = []bootloader.Preset{bootloader.PresetAduflash, bootloader.PresetMender, bootloader.PresetRAUC}

// board is a U-Boot board: an environment, the state model over it and the bootloader's
// reset behaviour.
type board struct {
	env *sim.MemEnv
	bl  *bootloader.UBoot
	dev *sim.Device
}

func newBoard(t *testing.T, p bootloader.Preset, vars map[string]string, attempts int) *board {
	t.Helper()
	env := sim.NewMemEnv(vars)
	bl, err := bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: p, Attempts: attempts})
	if err != nil {
		t.Fatal(err)
	}
	return &board{env: env, bl: bl, dev: &sim.Device{Env: env, Preset: p, RAUCAttempts: attempts}}
}

// defaultEnv is what each preset's default environment holds on a fresh board.
func defaultEnv(p bootloader.Preset) map[string]string {
	switch p {
	case bootloader.PresetMender:
		return map[string]string{"mender_boot_part": "2", "mender_boot_part_hex": "2", "bootlimit": "1", "upgrade_available": "0", "bootcount": "0"}
	case bootloader.PresetRAUC:
		return map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "3"}
	}
	return map[string]string{"adu_slot": "A"}
}

func (b *board) state(t *testing.T) bootloader.State {
	t.Helper()
	st, err := b.bl.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (b *board) reset(t *testing.T) sim.Boot {
	t.Helper()
	r, err := b.dev.Reset()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// attemptsOf is how many boots a pending bank gets with each preset's defaults here.
func attemptsOf(p bootloader.Preset) int {
	if p == bootloader.PresetMender {
		return 1 // Mender's bootlimit=1
	}
	return 3
}

func TestUpdateConfirmed(t *testing.T) {
	for _, p := range presets {
		t.Run(string(p), func(t *testing.T) {
			b := newBoard(t, p, defaultEnv(p), 3)
			if st := b.state(t); st.Primary != "A" || st.Pending != "" {
				t.Fatalf("fresh board: %+v", st)
			}
			if r := b.reset(t); r.Bank != "A" {
				t.Fatalf("fresh board boots %s", r.Bank)
			}
			w := b.env.Writes()
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			if got := b.env.Writes() - w; got != 1 {
				t.Fatalf("MarkPending made %d writes, want exactly 1", got)
			}
			st := b.state(t)
			if st.Primary != "B" || st.Pending != "B" || st.Fallback != "A" || st.AttemptsLeft != attemptsOf(p) {
				t.Fatalf("after MarkPending(B): %+v", st)
			}
			if r := b.reset(t); r.Bank != "B" || r.Rollback {
				t.Fatalf("first boot after MarkPending: %+v", r)
			}
			w = b.env.Writes()
			if err := b.bl.Confirm("B"); err != nil {
				t.Fatal(err)
			}
			if got := b.env.Writes() - w; got != 1 {
				t.Fatalf("Confirm made %d writes, want exactly 1", got)
			}
			st = b.state(t)
			if st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
				t.Fatalf("after Confirm(B): %+v", st)
			}
			// Confirmed: B keeps booting, however often the board resets, with the agent
			// confirming each healthy boot. That writes nothing, except for RAUC, whose
			// script spends an attempt at every boot (RAUC's mark-good gives it back).
			for i := 0; i < 5; i++ {
				if r := b.reset(t); r.Bank != "B" || r.Rollback {
					t.Fatalf("reset %d after confirm: %+v", i, r)
				}
				w = b.env.Writes()
				if err := b.bl.Confirm("B"); err != nil {
					t.Fatal(err)
				}
				want := 0
				if p == bootloader.PresetRAUC {
					want = 1
				}
				if got := b.env.Writes() - w; got != want {
					t.Fatalf("Confirm on healthy boot %d: %d writes, want %d", i, got, want)
				}
				if st := b.state(t); st.Pending != "" || st.Primary != "B" {
					t.Fatalf("after boot %d: %+v", i, st)
				}
			}
		})
	}
}

func TestBootloaderRollsBack(t *testing.T) {
	for _, p := range presets {
		t.Run(string(p), func(t *testing.T) {
			b := newBoard(t, p, defaultEnv(p), 3)
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			n := attemptsOf(p)
			for i := 0; i < n; i++ {
				if r := b.reset(t); r.Bank != "B" || r.Rollback {
					t.Fatalf("trial boot %d of %d: %+v", i+1, n, r)
				}
				if st := b.state(t); st.Pending != "B" || st.AttemptsLeft != n-1-i {
					t.Fatalf("after trial boot %d: %+v", i+1, st)
				}
			}
			r := b.reset(t)
			if r.Bank != "A" || !r.Rollback {
				t.Fatalf("boot %d must roll back to A: %+v", n+1, r)
			}
			st := b.state(t)
			if p == bootloader.PresetRAUC {
				// RAUC's variables still name B as the trial, with no attempts left; only
				// the booted bank (A) tells that the bootloader gave up on it.
				if st.Pending != "B" || st.AttemptsLeft != 0 || st.Fallback != "A" {
					t.Fatalf("after rollback: %+v", st)
				}
			} else {
				if st.Primary != "A" || st.Pending != "" {
					t.Fatalf("after rollback: %+v", st)
				}
				if p == bootloader.PresetAduflash && !st.IsBad("B") {
					t.Errorf("after rollback B is not marked bad: %+v", st)
				}
				// The agent, started on A, cannot confirm B.
				if err := b.bl.Confirm("B"); !errors.Is(err, bootloader.ErrNotPrimary) {
					t.Fatalf("Confirm(B) after rollback: %v", err)
				}
			}
			// The agent, started on A, records B as bad.
			if err := b.bl.MarkBad("B"); err != nil {
				t.Fatal(err)
			}
			if st := b.state(t); !st.IsBad("B") || st.Primary != "A" || st.Pending != "" {
				t.Fatalf("after MarkBad(B): %+v", st)
			}
			if r := b.reset(t); r.Bank != "A" {
				t.Fatalf("boots %s after rollback", r.Bank)
			}
			// A later update of B clears the mark.
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			if st := b.state(t); st.IsBad("B") || st.Pending != "B" {
				t.Fatalf("MarkPending(B) after bad: %+v", st)
			}
		})
	}
}

func TestMarkBadCancelsTrial(t *testing.T) {
	for _, p := range presets {
		t.Run(string(p), func(t *testing.T) {
			b := newBoard(t, p, defaultEnv(p), 3)
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			if r := b.reset(t); r.Bank != "B" {
				t.Fatalf("trial boot: %+v", r)
			}
			// Health check failed on B: the agent marks it bad, in one write.
			w := b.env.Writes()
			if err := b.bl.MarkBad("B"); err != nil {
				t.Fatal(err)
			}
			if b.env.Writes()-w != 1 {
				t.Fatalf("MarkBad made %d writes", b.env.Writes()-w)
			}
			st := b.state(t)
			if st.Primary != "A" || st.Pending != "" || !st.IsBad("B") {
				t.Fatalf("after MarkBad(B): %+v", st)
			}
			if r := b.reset(t); r.Bank != "A" {
				t.Fatalf("boots %s after MarkBad(B)", r.Bank)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	for _, p := range presets {
		t.Run(string(p), func(t *testing.T) {
			b := newBoard(t, p, defaultEnv(p), 3)
			w := b.env.Writes()
			for _, c := range []struct {
				op   func(bootloader.Bank) error
				s    bootloader.Bank
				want error
			}{
				{b.bl.MarkPending, "A", bootloader.ErrPrimaryBank},
				{b.bl.MarkPending, "C", bootloader.ErrUnknownBank},
				{b.bl.Confirm, "B", bootloader.ErrNotPrimary},
				{b.bl.MarkBad, "A", bootloader.ErrPrimaryBank},
				{b.bl.MarkBad, "", bootloader.ErrUnknownBank},
			} {
				if err := c.op(c.s); !errors.Is(err, c.want) {
					t.Errorf("op on %q: %v, want %v", c.s, err, c.want)
				}
			}
			if b.env.Writes() != w {
				t.Errorf("refused operations wrote the environment %d times", b.env.Writes()-w)
			}
			// While B is on trial, A is the fallback and cannot be put on trial itself.
			if err := b.bl.MarkPending("B"); err != nil {
				t.Fatal(err)
			}
			if err := b.bl.MarkPending("A"); !errors.Is(err, bootloader.ErrPrimaryBank) {
				t.Errorf("MarkPending(A) while B is pending: %v", err)
			}
			// A failed write leaves the state as it was.
			before := b.state(t)
			b.env.FailWrites(1)
			if err := b.bl.Confirm("B"); !errors.Is(err, sim.ErrWriteFailed) {
				t.Fatalf("Confirm with a failing write: %v", err)
			}
			if after := b.state(t); !reflect.DeepEqual(before, after) {
				t.Fatalf("a failed write changed the state: %+v → %+v", before, after)
			}
		})
	}
}

func TestBadVariables(t *testing.T) {
	cases := []struct {
		p    bootloader.Preset
		vars map[string]string
	}{
		{bootloader.PresetAduflash, map[string]string{"adu_slot": "C"}},
		{bootloader.PresetAduflash, map[string]string{"adu_slot": "B", "upgrade_available": "1"}},                       // no fallback
		{bootloader.PresetAduflash, map[string]string{"adu_slot": "B", "upgrade_available": "1", "adu_prev_slot": "B"}}, // fallback = itself
		{bootloader.PresetAduflash, map[string]string{"adu_slot": "B", "upgrade_available": "1", "adu_prev_slot": "A", "bootcount": "x"}},
		{bootloader.PresetMender, map[string]string{"mender_boot_part": "7"}},
		{bootloader.PresetMender, map[string]string{"mender_boot_part": "3", "upgrade_available": "1", "bootlimit": "-1"}},
		{bootloader.PresetRAUC, map[string]string{"BOOT_A_LEFT": "zz"}},
	}
	for i, c := range cases {
		b := newBoard(t, c.p, c.vars, 3)
		if _, err := b.bl.State(); !errors.Is(err, bootloader.ErrBadState) {
			t.Errorf("case %d (%s %v): %v, want ErrBadState", i, c.p, c.vars, err)
		}
		if err := b.bl.MarkPending("B"); err == nil {
			t.Errorf("case %d: MarkPending on an invalid state succeeded", i)
		}
	}
}

// The exact variables each preset writes: these are what existing boot scripts read.
func TestPresetVariables(t *testing.T) {
	cases := []struct {
		p       bootloader.Preset
		start   map[string]string
		pending map[string]string
		absent  []string
	}{
		{bootloader.PresetAduflash, map[string]string{"adu_slot": "A", "adu_bad": "B"},
			map[string]string{"adu_slot": "B", "adu_prev_slot": "A", "upgrade_available": "1", "bootcount": "0", "bootlimit": "3",
				"altbootcmd": bootloader.AduflashAltBootCmd}, []string{"adu_bad"}},
		{bootloader.PresetMender, map[string]string{"mender_boot_part": "2", "bootlimit": "1"},
			map[string]string{"mender_boot_part": "3", "mender_boot_part_hex": "3", "upgrade_available": "1", "bootcount": "0", "bootlimit": "1"}, nil},
		{bootloader.PresetRAUC, map[string]string{"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"},
			map[string]string{"BOOT_ORDER": "B A", "BOOT_B_LEFT": "3", "adu_pending": "B", "BOOT_A_LEFT": "3"}, nil},
	}
	for _, c := range cases {
		b := newBoard(t, c.p, c.start, 3)
		if err := b.bl.MarkPending("B"); err != nil {
			t.Fatal(err)
		}
		vars, _ := b.env.Vars()
		for k, v := range c.pending {
			if vars[k] != v {
				t.Errorf("%s: after MarkPending(B) %s=%q, want %q (all: %v)", c.p, k, vars[k], v, vars)
			}
		}
		for _, k := range c.absent {
			if _, ok := vars[k]; ok {
				t.Errorf("%s: %s still set: %v", c.p, k, vars)
			}
		}
	}
}

// RAUC's scripts decrement BOOT_x_LEFT with setexpr, which writes hex.
func TestRAUCHexCounts(t *testing.T) {
	b := newBoard(t, bootloader.PresetRAUC, map[string]string{"BOOT_ORDER": "B A", "BOOT_B_LEFT": "a", "BOOT_A_LEFT": "0x3", "adu_pending": "B"}, 12)
	st := b.state(t)
	if st.Pending != "B" || st.AttemptsLeft != 10 || st.Fallback != "A" {
		t.Fatalf("%+v", st)
	}
	if err := b.bl.Confirm("B"); err != nil {
		t.Fatal(err)
	}
	vars, _ := b.env.Vars()
	if vars["BOOT_B_LEFT"] != "c" {
		t.Fatalf("BOOT_B_LEFT=%q, want c (12 in hex)", vars["BOOT_B_LEFT"])
	}
}

func TestConfigErrors(t *testing.T) {
	env := sim.NewMemEnv(nil)
	for i, cfg := range []bootloader.UBootConfig{
		{Preset: "barebox"},
		{Banks: []bootloader.Bank{"A"}},
		{Banks: []bootloader.Bank{"A", "A"}},
		{Banks: []bootloader.Bank{"A", "B C"}},
		{Attempts: 300},
		{Preset: bootloader.PresetMender, Banks: []bootloader.Bank{"A", "B", "C"}},
		{Preset: bootloader.PresetMender, MenderParts: map[bootloader.Bank]int{"A": 2, "B": 2}},
	} {
		if _, err := bootloader.NewUBoot(env, cfg); err == nil {
			t.Errorf("config %d %s: accepted", i, fmt.Sprint(cfg))
		}
	}
}

// RAUC's script spends an attempt of the booted bank at every boot, so after a rollback and
// a few unconfirmed boots every count can be 0: the primary is then the first bank not marked
// bad, and confirming it gives its attempts back (found by the real-U-Boot test).
func TestRAUCAllCountsSpent(t *testing.T) {
	b := newBoard(t, bootloader.PresetRAUC, map[string]string{"BOOT_ORDER": "B A", "BOOT_A_LEFT": "0", "BOOT_B_LEFT": "0", "adu_bad": "B"}, 3)
	st := b.state(t)
	if st.Primary != "A" || st.Pending != "" || !st.IsBad("B") || st.IsBad("A") {
		t.Fatalf("%+v", st)
	}
	if err := b.bl.Confirm("A"); err != nil {
		t.Fatal(err)
	}
	vars, _ := b.env.Vars()
	if vars["BOOT_A_LEFT"] != "3" || vars["BOOT_B_LEFT"] != "0" {
		t.Fatalf("after Confirm(A): %v", vars)
	}
	if r := b.reset(t); r.Bank != "A" {
		t.Fatalf("booted %s", r.Bank)
	}
}
