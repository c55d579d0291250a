package bootloader_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// envFlash is a redundant U-Boot environment on simulated raw flash, as a board keeps it:
// two 16 KiB copies in their own erase blocks (NAND: each copy may skip one bad block).
type envFlash struct {
	name  string
	flash *mtdsim.Flash
	geo   ubootenv.MTDGeometry
}

const envSize = 0x4000

func newEnvFlash(t *testing.T, nand bool, seed uint64, bad ...int) *envFlash {
	t.Helper()
	var (
		f   *mtdsim.Flash
		err error
	)
	if nand {
		f, err = mtdsim.NewNAND(16*envSize, envSize, 512, mtdsim.WithSeed(seed), mtdsim.WithFactoryBad(bad...))
	} else {
		f, err = mtdsim.NewNOR(16*envSize, envSize, mtdsim.WithSeed(seed))
	}
	if err != nil {
		t.Fatal(err)
	}
	i := f.Info()
	return &envFlash{
		name:  fmt.Sprintf("%s(bad %v)", i.Type, bad),
		flash: f,
		geo:   ubootenv.MTDGeometry{NAND: i.Type.IsNAND(), Size: i.Size, EraseSize: i.EraseSize, WriteSize: i.WriteSize},
	}
}

// open reads the environment as the agent does after a (re)boot.
func (e *envFlash) open(t *testing.T) *ubootenv.Env {
	t.Helper()
	var st []ubootenv.Storage
	for i, off := range []int64{0, 4 * envSize} {
		s, err := ubootenv.NewMTDStorage(fmt.Sprintf("env%d", i+1), e.flash, e.geo, off, envSize, 2, true)
		if err != nil {
			t.Fatal(err)
		}
		st = append(st, s)
	}
	env, err := ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: envSize}, HasDefaults: true}, st...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func (e *envFlash) backend(t *testing.T, env *ubootenv.Env) *bootloader.UBoot {
	t.Helper()
	bl, err := bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	return bl
}

// A transition of the state model, or a reset of the board (U-Boot saving bootcount).
type transition struct {
	name string
	prep func(t *testing.T, e *envFlash) // brings the flash to the state before
	do   func(e *envFlash, env *ubootenv.Env) error
}

// trialOfB marks bank B pending and lets U-Boot boot it once: a trial under way.
func (e *envFlash) trialOfB(t *testing.T, env *ubootenv.Env) {
	t.Helper()
	must(t, e.backend(t, env).MarkPending("B"))
	_, err := (&sim.Device{Env: env}).Reset()
	must(t, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var transitions = []transition{
	{"MarkPending", func(t *testing.T, e *envFlash) {},
		func(e *envFlash, env *ubootenv.Env) error { return e.backendNoT(env).MarkPending("B") }},
	{"U-Boot counts a trial boot", func(t *testing.T, e *envFlash) {
		must(t, e.backend(t, e.open(t)).MarkPending("B"))
	}, func(e *envFlash, env *ubootenv.Env) error {
		_, err := (&sim.Device{Env: env}).Reset()
		return err
	}},
	{"Confirm", func(t *testing.T, e *envFlash) {
		e.trialOfB(t, e.open(t))
	}, func(e *envFlash, env *ubootenv.Env) error { return e.backendNoT(env).Confirm("B") }},
	{"Confirm raising the floor", func(t *testing.T, e *envFlash) {
		env := e.open(t)
		must(t, e.backend(t, env).RaiseFloors(bootloader.Floors{"rootfs": 3}))
		e.trialOfB(t, env)
	}, func(e *envFlash, env *ubootenv.Env) error {
		return e.backendNoT(env).ConfirmRaising("B", bootloader.Floors{"rootfs": 8})
	}},
	{"MarkBad", func(t *testing.T, e *envFlash) {
		e.trialOfB(t, e.open(t))
	}, func(e *envFlash, env *ubootenv.Env) error { return e.backendNoT(env).MarkBad("B") }},
	{"U-Boot rolls back (altbootcmd)", func(t *testing.T, e *envFlash) {
		env := e.open(t)
		must(t, e.backend(t, env).MarkPending("B"))
		d := &sim.Device{Env: env}
		for i := 0; i < 2; i++ {
			_, err := d.Reset()
			must(t, err)
		}
	}, func(e *envFlash, env *ubootenv.Env) error {
		_, err := (&sim.Device{Env: env}).Reset()
		return err
	}},
}

func (e *envFlash) backendNoT(env *ubootenv.Env) *bootloader.UBoot {
	bl, _ := bootloader.NewUBoot(env, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
	return bl
}

// bootFacts is what a transition changes: the state and the anti-rollback floors.
type bootFacts struct {
	State  bootloader.State
	Floors bootloader.Floors
}

func (e *envFlash) facts(t *testing.T, env *ubootenv.Env) (bootFacts, error) {
	bl := e.backend(t, env)
	st, err := bl.State()
	if err != nil {
		return bootFacts{}, err
	}
	f, err := bl.Floors()
	return bootFacts{st, f}, err
}

// Power is cut at every flash operation of every transition, each cut tearing the
// operation at a random point (three rounds: the simulator's generator moves on, so every
// round tears each operation elsewhere). After power returns the environment always has
// a valid copy, and the state with the floors is exactly the old one or the new one, never a
// mix and never the defaults.
func TestPowerCutAtEveryOperation(t *testing.T) {
	layouts := []struct {
		nand bool
		bad  []int
	}{{false, nil}, {true, nil}, {true, []int{0, 5}}}
	for _, l := range layouts {
		for _, tr := range transitions {
			e := newEnvFlash(t, l.nand, 1, l.bad...)
			t.Run(e.name+"/"+tr.name, func(t *testing.T) {
				// A board with a confirmed environment on bank A (both copies written once).
				env := e.open(t)
				must(t, env.Update(map[string]string{"adu_slot": "A", "bootcmd": "run adu_boot"}, nil))
				must(t, env.Update(map[string]string{"bootdelay": "0"}, nil))
				tr.prep(t, e)
				before := e.flash.Snapshot()
				old, err := e.facts(t, e.open(t))
				must(t, err)

				// The transition without a cut: its state after, and how many operations it takes.
				e.flash.ResetCounters()
				must(t, tr.do(e, e.open(t)))
				ops := int(e.flash.Counters().Ops)
				newer, err := e.facts(t, e.open(t))
				must(t, err)
				if reflect.DeepEqual(old, newer) {
					t.Fatalf("the transition changed nothing: %+v", old)
				}
				if ops == 0 {
					t.Fatal("the transition made no flash operation")
				}
				for round := 1; round <= 3; round++ {
					for n := 0; n < ops; n++ {
						must(t, e.flash.Restore(before))
						env := e.open(t) // read before the cut, as the agent would have
						e.flash.PowerCutAfter(n)
						err := tr.do(e, env)
						if !errors.Is(err, mtd.ErrPowerCut) {
							t.Fatalf("cut after %d of %d operations: the transition returned %v, want a power-cut error", n, ops, err)
						}
						e.flash.PowerOn()
						after := e.open(t)
						if after.Info().UsingDefaults {
							t.Fatalf("cut after %d of %d operations (round %d): no valid copy left", n, ops, round)
						}
						got, err := e.facts(t, after)
						if err != nil {
							t.Fatalf("cut after %d of %d operations (round %d): %v", n, ops, round, err)
						}
						if !reflect.DeepEqual(got, old) && !reflect.DeepEqual(got, newer) {
							t.Fatalf("cut after %d of %d operations (round %d): state %+v is neither the old %+v nor the new %+v", n, ops, round, got, old, newer)
						}
					}
				}
			})
		}
	}
}
