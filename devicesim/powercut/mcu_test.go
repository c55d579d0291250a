package powercut

import (
	"context"
	"strings"
	"testing"

	simboard "github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/internal/powersim"
)

// A cut of the gateway at every operation of its MCU's update (each journal operation, each
// SMP request it sends), from the journal write that ends the gateway's own part on: the MCU
// always boots a good image, the update completes (the MCU runs the new image confirmed, the
// deployment is reported succeeded), and no byte the MCU acknowledged is sent again beyond
// one frame (checkMCU).
func TestPowerCutMCU(t *testing.T) {
	f, err := NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	p, err := f.Plan(ctx, simboard.Block, MCU)
	if err != nil {
		t.Fatal(err)
	}
	start, smps := mcuPhase(p.Ops)
	if smps == 0 {
		t.Fatal("the MCU's update sent no SMP request through the power switch")
	}
	step := 1
	if testing.Short() {
		step = 5
	}
	var cases []Case
	for k := start; k < len(p.Ops); k += step {
		cases = append(cases, Case{Storage: p.Storage, Scenario: MCU, Tear: simboard.TearNone, Cut: k})
		if p.Ops[k].Kind.Tears() {
			cases = append(cases, Case{Storage: p.Storage, Scenario: MCU, Tear: simboard.TearPartial, Cut: k})
		}
	}
	plans := map[[2]string]*Plan{{string(p.Storage), string(MCU)}: p}
	bad := 0
	for r := range runAll(ctx, f, plans, cases) {
		if len(r.Problems) == 0 {
			continue
		}
		if bad++; bad <= 5 {
			t.Errorf("%s (%d boots), a cut at %v:\n  %s", r.Case, r.Boots, p.Ops[r.Cut], strings.Join(r.Problems, "\n  "))
			if bad == 1 {
				t.Logf("agent log:\n%s", tail(r.Log, 6000))
			}
		}
	}
	t.Logf("%d cut points from operation %d of %d (%d SMP requests), %d bad outcomes", len(cases), start, len(p.Ops), smps, bad)
}

// mcuPhase returns where the MCU's part of a run starts (the journal operations right
// before its first SMP request) and how many SMP requests it sends.
func mcuPhase(ops []simboard.Op) (start, smps int) {
	start = -1
	for i, op := range ops {
		if op.Kind == powersim.SMP {
			if start < 0 {
				start = i
			}
			smps++
		}
	}
	for start > 0 && ops[start-1].Where == "journal" {
		start--
	}
	return max(start, 0), smps
}
