package bootloader_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/grubenv"
	"github.com/aduflash/aduflash/bootloader/sim"
)

// floorBoard is a backend that keeps floors, with its environment and a reset of its boot side.
type floorBoard struct {
	name string
	bl   interface {
		bootloader.Backend
		bootloader.FloorKeeper
	}
	env   *sim.MemEnv
	reset func(t *testing.T) bootloader.Bank
}

// floorBoards are a U-Boot board for each preset and a GRUB board, each with bank A running.
func floorBoards(t *testing.T) []floorBoard {
	var out []floorBoard
	for _, p := range presets {
		b := newBoard(t, p, defaultEnv(p), 3)
		out = append(out, floorBoard{name: "u-boot/" + string(p), bl: b.bl, env: b.env,
			reset: func(t *testing.T) bootloader.Bank { return b.reset(t).Bank }})
	}
	env := sim.NewMemEnv(nil)
	g, err := bootloader.NewGRUB(env, bootloader.GRUBConfig{})
	if err != nil {
		t.Fatal(err)
	}
	d := simGRUB{&sim.GRUB{Env: env}}
	out = append(out, floorBoard{name: "grub", bl: g, env: env, reset: d.boot})
	return out
}

func floors(t *testing.T, fk bootloader.FloorKeeper) bootloader.Floors {
	t.Helper()
	f, err := fk.Floors()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// The floors rise only with Confirm, in the same single write that ends the trial; pending,
// rollback and MarkBad leave them alone; they never fall; the boot side ignores them.
func TestConfirmRaisesFloors(t *testing.T) {
	for _, b := range floorBoards(t) {
		t.Run(b.name, func(t *testing.T) {
			if f := floors(t, b.bl); len(f) != 0 {
				t.Fatalf("fresh board: floors %v", f)
			}
			if s := b.reset(t); s != "A" {
				t.Fatalf("fresh board booted %s", s)
			}
			must(t, b.bl.ConfirmRaising("A", bootloader.Floors{"rootfs": 3}))

			// A trial of B, confirmed: one write confirms B and raises the floor.
			must(t, b.bl.MarkPending("B"))
			if f := floors(t, b.bl); !reflect.DeepEqual(f, bootloader.Floors{"rootfs": 3}) {
				t.Fatalf("MarkPending changed the floors: %v", f)
			}
			if s := b.reset(t); s != "B" {
				t.Fatalf("trial booted %s", s)
			}
			w := b.env.Writes()
			must(t, b.bl.ConfirmRaising("B", bootloader.Floors{"rootfs": 7, "app": 2}))
			if n := b.env.Writes() - w; n != 1 {
				t.Errorf("ConfirmRaising made %d writes, want 1", n)
			}
			if st, err := b.bl.State(); err != nil || st.Primary != "B" || st.Pending != "" {
				t.Fatalf("after ConfirmRaising(B): %+v, %v", st, err)
			}
			want := bootloader.Floors{"rootfs": 7, "app": 2}
			if f := floors(t, b.bl); !reflect.DeepEqual(f, want) {
				t.Fatalf("after ConfirmRaising(B): floors %v, want %v", f, want)
			}

			// Lower counters do not lower a floor, and write nothing when nothing rises.
			w = b.env.Writes()
			must(t, b.bl.RaiseFloors(bootloader.Floors{"rootfs": 5, "app": 2}))
			if f := floors(t, b.bl); !reflect.DeepEqual(f, want) || b.env.Writes() != w {
				t.Fatalf("RaiseFloors with lower counters: floors %v, %d writes", f, b.env.Writes()-w)
			}
			must(t, b.bl.RaiseFloors(bootloader.Floors{"app": 4}))
			want["app"] = 4
			if f := floors(t, b.bl); !reflect.DeepEqual(f, want) {
				t.Fatalf("RaiseFloors(app 4): floors %v, want %v", f, want)
			}

			// A trial of A that is rolled back keeps the floors.
			must(t, b.bl.MarkPending("A"))
			for i := 0; i < 4; i++ {
				if b.reset(t) == "B" {
					break
				}
			}
			must(t, b.bl.MarkBad("A"))
			if f := floors(t, b.bl); !reflect.DeepEqual(f, want) {
				t.Fatalf("after a rollback: floors %v, want %v", f, want)
			}
			if s := b.reset(t); s != "B" {
				t.Fatalf("after the rollback booted %s", s)
			}
		})
	}
}

// A floor that cannot be read stops ConfirmRaising before it writes (the state model refuses
// any malformed variable); plain Confirm does not look at it.
func TestMalformedFloor(t *testing.T) {
	for _, v := range []string{"rootfs", "rootfs:x", ":5", "rootfs:-1", "rootfs:18446744073709551616"} {
		for _, b := range floorBoards(t) {
			must(t, b.env.Update(map[string]string{bootloader.VarSecFloor: v}, nil))
			if _, err := b.bl.Floors(); !errors.Is(err, bootloader.ErrBadState) {
				t.Errorf("%s: %s=%q: Floors: %v, want ErrBadState", b.name, bootloader.VarSecFloor, v, err)
			}
			w := b.env.Writes()
			if err := b.bl.ConfirmRaising("A", bootloader.Floors{"rootfs": 1}); !errors.Is(err, bootloader.ErrBadState) || b.env.Writes() != w {
				t.Errorf("%s: %q: ConfirmRaising: %v after %d writes, want ErrBadState and none", b.name, v, err, b.env.Writes()-w)
			}
			if err := b.bl.Confirm("A"); err != nil {
				t.Errorf("%s: %q: Confirm: %v", b.name, v, err)
			}
		}
	}
}

// A class name the variable cannot hold is refused before anything is written; ':' in a
// class name is fine (the counter follows the last one).
func TestFloorClassNames(t *testing.T) {
	for _, b := range floorBoards(t) {
		for _, c := range []string{"", "a b", "a\nb", "a\x00b"} {
			w := b.env.Writes()
			if err := b.bl.RaiseFloors(bootloader.Floors{c: 1}); !errors.Is(err, bootloader.ErrFloorClass) || b.env.Writes() != w {
				t.Errorf("%s: class %q: %v, want ErrFloorClass and no write", b.name, c, err)
			}
		}
		must(t, b.bl.RaiseFloors(bootloader.Floors{"mcu:0": 9, "rootfs": 1}))
		if f := floors(t, b.bl); !reflect.DeepEqual(f, bootloader.Floors{"mcu:0": 9, "rootfs": 1}) {
			t.Errorf("%s: floors %v", b.name, f)
		}
	}
}

func TestFloorsString(t *testing.T) {
	f := bootloader.Floors{"rootfs": 7, "app": 12, "zero": 0}
	if got := f.String(); got != "app:12 rootfs:7" {
		t.Fatalf("String: %q", got)
	}
}

// The GRUB backend keeps the floors in the environment block, where grubenv reads them.
func TestGRUBFloorInBlock(t *testing.T) {
	g, path := grubBoard(t)
	must(t, g.RaiseFloors(bootloader.Floors{"rootfs": 3}))
	vars, err := (grubenv.Store{Path: path}).Vars()
	if err != nil {
		t.Fatal(err)
	}
	if vars[bootloader.VarSecFloor] != "rootfs:3" {
		t.Fatalf("grubenv holds %v", vars)
	}
}
