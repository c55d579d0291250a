package powercut

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	simboard "github.com/aduflash/aduflash/devicesim/board"
)

var (
	sweepMode = flag.String("sweep", "sample", `"sample": a seeded sample of the cut points of every storage, scenario and tear mode; "full": every cut point (make sweep)`)
	perGroup  = flag.Int("sweep.n", 25, "cut points per storage, scenario and tear mode in a sample")
	seed      = flag.Uint64("sweep.seed", 1, "seed of the sample")
	workers   = flag.Int("sweep.workers", 0, "cases run at once (0: GOMAXPROCS)")
	only      = flag.String("sweep.scenario", "", "run only this scenario (empty: all)")
)

// group is the cut points of one storage, scenario and tear mode.
type group struct {
	plan   *Plan
	tear   simboard.Tear
	all    int // cut points of the group
	points []int
}

func (g group) name() string { return groupName(g.plan.Storage, g.plan.Scenario, g.tear) }

func groupName(st simboard.Storage, sc Scenario, t simboard.Tear) string {
	return fmt.Sprintf("%s/%s/%s", st, sc, t)
}

// The power is cut at the operations of a whole update, on every storage, in both scenarios,
// with and without tearing the cut operation: every case ends with the device booting good
// banks only and the update installed or cleanly rolled back and reported.
func TestPowerCutSweep(t *testing.T) {
	if *sweepMode != "sample" && *sweepMode != "full" {
		t.Fatalf("-sweep=%q: want sample or full", *sweepMode)
	}
	f, err := NewFixture()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	groups := plan(t, ctx, f)
	var cases []Case
	for _, g := range groups {
		for _, k := range g.points {
			cases = append(cases, Case{Storage: g.plan.Storage, Scenario: g.plan.Scenario, Tear: g.tear, Cut: k})
		}
	}
	plans := map[[2]string]*Plan{}
	for _, g := range groups {
		plans[[2]string{string(g.plan.Storage), string(g.plan.Scenario)}] = g.plan
	}
	start := time.Now()
	bad := map[string]int{}
	done, nbad, inUBoot := 0, 0, 0
	for r := range runAll(ctx, f, plans, cases) {
		done++
		if r.InUBoot {
			inUBoot++
		}
		if done%2000 == 0 {
			t.Logf("%d of %d cut points run, %d bad outcomes (%s)", done, len(cases), nbad, time.Since(start).Round(time.Second))
		}
		if len(r.Problems) == 0 {
			continue
		}
		nbad++
		bad[groupName(r.Storage, r.Scenario, r.Tear)]++
		if nbad <= 10 {
			t.Errorf("%s (%d boots):\n  %s", r.Case, r.Boots, strings.Join(r.Problems, "\n  "))
			if nbad <= 2 {
				t.Logf("agent log of %s:\n%s", r.Case, tail(r.Log, 6000))
			}
		}
	}
	for _, g := range groups {
		t.Logf("%-26s %5d of %5d cut points, %d bad outcomes", g.name(), len(g.points), g.all, bad[g.name()])
	}
	t.Logf("%d of them cut U-Boot's bootcount save", inUBoot)
	if *sweepMode == "full" && inUBoot == 0 {
		t.Error("no cut fell on U-Boot's environment save")
	}
	t.Logf("%d cut points, %d bad outcomes (%s sweep, %s)", len(cases), nbad, *sweepMode, time.Since(start).Round(time.Second))
}

// plan runs every storage and scenario without a cut and picks the cut points: all of them,
// or a seeded sample of each group.
func plan(t *testing.T, ctx context.Context, f *Fixture) []group {
	rng := rand.New(rand.NewPCG(*seed, 2))
	var groups []group
	var notWhole []string
	for _, st := range Storages {
		for _, sc := range Scenarios {
			if *only != "" && string(sc) != *only {
				continue
			}
			p, err := f.Plan(ctx, st, sc)
			if err != nil {
				t.Fatal(err)
			}
			for _, tear := range Tears {
				g := group{plan: p, tear: tear, points: p.Points(tear)}
				g.all = len(g.points)
				if *sweepMode == "sample" {
					g.points = sample(rng, g.points, *perGroup)
				}
				groups = append(groups, g)
			}
			if !p.Whole(f) {
				notWhole = append(notWhole, fmt.Sprintf("%s/%s", st, sc))
			}
		}
	}
	if len(notWhole) > 0 {
		// The copy's operations are cut points of the sweep; without the copy there are none.
		t.Errorf("%s: bank B's kernel slot is not a copy of bank A's after an update that does not write the kernel", strings.Join(notWhole, ", "))
	}
	return groups
}

// sample picks n of points: the first and the last, and the others at random.
func sample(rng *rand.Rand, points []int, n int) []int {
	if len(points) <= n {
		return points
	}
	picked := []int{points[0], points[len(points)-1]}
	for _, i := range rng.Perm(len(points) - 2)[:n-2] {
		picked = append(picked, points[i+1])
	}
	slices.Sort(picked)
	return picked
}

// runAll runs the cases on a few workers and hands on the results as they come.
func runAll(ctx context.Context, f *Fixture, plans map[[2]string]*Plan, cases []Case) <-chan Result {
	n := *workers
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	in := make(chan Case)
	out := make(chan Result)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range in {
				out <- f.Run(ctx, plans[[2]string{string(c.Storage), string(c.Scenario)}], c)
			}
		}()
	}
	go func() {
		for _, c := range cases {
			in <- c
		}
		close(in)
		wg.Wait()
		close(out)
	}()
	return out
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
