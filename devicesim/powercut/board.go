package powercut

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/devicesim"
	simboard "github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/smp"
)

// Bounds of one case: boots after which the update must be over, and how long one boot of
// the agent may run.
const (
	maxBoots    = 12
	bootTimeout = 10 * time.Second
	maxProblems = 8
)

var boardSeq atomic.Int64

// board is one case's device, its twin and what the checks found.
type board struct {
	f    *Fixture
	c    Case
	plan *Plan // nil: the uncut run, whose bank B is not known yet
	u    *update
	id   string
	dir  string
	dev  *devicesim.Device
	twin *twin
	log  syncbuf.Buffer
	res  Result
}

// geometry is the board of each storage: small pages and erase blocks, so that a whole
// update has many operations.
func geometry(st simboard.Storage) simboard.Options {
	o := simboard.Options{Storage: st, SlotSize: 384 << 10, EraseSize: 4 << 10, SyncInterval: 32 << 10,
		Classes: []simboard.Class{{Name: "kernel", Size: 96 << 10}}}
	if st == simboard.NAND {
		o.SlotSize, o.EraseSize, o.PageSize = 448<<10, 16<<10, 512
		o.FactoryBad = map[string][]int{"B/rootfs": {2}, "B/kernel": {1}, "env": {0}}
		o.GoesBad = map[string][]int{"B/rootfs": {6}}
		o.ReserveBlocks = 1
	}
	return o
}

func (f *Fixture) newBoard(c Case, plan *Plan) (*board, error) {
	b := &board{f: f, c: c, plan: plan, u: f.updates[c.Scenario], id: fmt.Sprintf("board-%d", boardSeq.Add(1)), res: Result{Case: c}}
	if b.u == nil {
		return nil, fmt.Errorf("powercut: unknown scenario %q", c.Scenario)
	}
	var err error
	if b.dir, err = os.MkdirTemp("", "powercut-"); err != nil {
		return nil, err
	}
	o := devicesim.Options{Board: geometry(c.Storage), Manufacturer: manufacturer, Model: model, ModelID: adu.ModelContractV3}
	o.Board.Dir, o.Board.Factory, o.Board.Classes[0].Factory, o.Board.Seed = b.dir, f.bankA["rootfs"], f.bankA["kernel"], c.seed()
	o.Keyring, o.Roots, o.NoBuiltinRoots = f.keyring, []adu.RootKey{f.signer.RootKey()}, true
	o.Healthy = b.healthy
	o.Connect = func(ctx context.Context) (agent.Hub, func(), error) { return b.twin.connect(ctx) }
	o.Logger = slog.New(slog.NewTextHandler(&b.log, nil))
	o.Agent = b.agentOptions
	if c.Scenario == MCU {
		// Replies come at once: a timeout long enough that no request goes twice on a loaded
		// machine keeps the operations of every run those of the plan.
		o.MCU = &devicesim.MCUOptions{Class: mcuClass, Sim: mcusim.Config{Primary: f.mcuA, Keyring: f.keyring, SlotSize: mcuSlotSize},
			SMP: smp.Options{Timeout: 3 * time.Second, EraseTimeout: 3 * time.Second, Retries: 2}}
	}
	o.Events = func(e devicesim.Event) {
		if e.Kind == "power-cut" && e.Detail == "U-Boot" {
			b.res.InUBoot = true
		}
	}
	if b.dev, err = devicesim.New(o); err != nil {
		os.RemoveAll(b.dir)
		return nil, err
	}
	b.twin = &twin{power: b.dev.Power(), service: f.service(b.u, b.id)}
	return b, nil
}

// agentOptions make a boot of the agent quick: no pauses between retries and reports, and
// an HTTP client of its own whose connections end with it and whose requests name the boot
// (bootHeader): a request the agent of a boot sent as the power went (a cancelled fetch
// already on the wire) may reach the server after the next boot began, and is not that
// boot's.
func (b *board) agentOptions(o *agent.Options) {
	o.HTTP = &http.Client{Transport: bootTransport{boot: b.res.Boots, rt: &http.Transport{DisableKeepAlives: true}}}
	o.Retry = download.RetryPolicy{Attempts: 3, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
	o.ReportAttempts, o.ReportBackoff = 1, time.Millisecond
}

// bootHeader names the boot whose agent sent a request to the files server.
const bootHeader = "X-Powercut-Boot"

// bootTransport sends every request with the boot's number in bootHeader.
type bootTransport struct {
	boot int
	rt   http.RoundTripper
}

func (t bootTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(bootHeader, strconv.Itoa(t.boot))
	return t.rt.RoundTrip(r)
}

// healthy is the health check of the application in a bank: in the rollback scenario the
// update's application does not come up.
func (b *board) healthy(bank string, rootfs []byte) bool {
	return b.c.Scenario != Rollback || !bytes.HasPrefix(rootfs, b.u.writes["rootfs"][:4096])
}

func (b *board) close() {
	b.dev.Close()
	b.f.files.forget(b.id)
	os.RemoveAll(b.dir)
}

func (b *board) problem(format string, args ...any) {
	if len(b.res.Problems) < maxProblems {
		b.res.Problems = append(b.res.Problems, fmt.Sprintf(format, args...))
	}
}

// run powers the board on until the update is over (or the bound is reached), checking
// every boot, then checks the end.
func (b *board) run(ctx context.Context) Result {
	defer b.close()
	b.f.files.startBoot(b.id, 0)
	for boot := 1; ; boot++ {
		if boot > maxBoots {
			b.problem("the update is not over after %d boots", maxBoots)
			break
		}
		started, err := b.dev.PowerOn()
		if err != nil {
			b.problem("boot %d: %v", boot, err)
			break
		}
		b.res.Boots = boot
		b.checkBank(boot, string(started.Bank))
		left, verified := b.leftToVerify()
		over, err := b.boot(ctx, boot)
		sent := b.f.files.sentIn(b.id, boot)
		if n := sum(sent); n > left {
			b.problem("boot %d downloaded %d bytes; the journal had verified all but %d", boot, n, left)
		}
		b.checkFetched(boot, sent, verified)
		b.checkFloors(boot)
		if over || ctx.Err() != nil {
			break
		}
		if errors.Is(err, context.DeadlineExceeded) {
			b.problem("boot %d: the agent ran for %s without the update ending", boot, bootTimeout)
			break
		}
	}
	b.checkEnd()
	if len(b.res.Problems) > 0 {
		b.res.Log = b.log.String()
	}
	return b.res
}

// boot runs the agent of one boot until the update is over (as the service sees it), the
// agent reboots, or the power goes.
func (b *board) boot(ctx context.Context, n int) (over bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	b.f.files.startBoot(b.id, n)
	b.twin.onReport(func() {
		if b.over() {
			cancel()
		}
	})
	defer b.twin.onReport(nil)
	err = b.dev.RunAgent(ctx)
	return b.over(), err
}

// over tells whether the service sees the deployment's outcome: the device idle again
// after it, with its result.
func (b *board) over() bool {
	a := b.twin.lastAgent()
	_, ok := resultOf(a)
	return ok && stateOf(a) == int(adu.StateIdle) && workflowOf(a) == workflowID
}

// resultOf returns the reported lastInstallResult.resultCode.
func resultOf(a map[string]any) (adu.ResultCode, bool) {
	lir, _ := a["lastInstallResult"].(map[string]any)
	rc, ok := lir["resultCode"].(float64)
	return adu.ResultCode(rc), ok
}

// checkBank checks that the bank U-Boot started holds what it must in every slot.
func (b *board) checkBank(boot int, bank string) {
	want := b.f.bankA
	switch {
	case bank == "B" && b.plan == nil:
		return
	case bank == "B":
		want = b.plan.BankB
	case bank != "A":
		b.problem("boot %d: U-Boot started bank %q", boot, bank)
		return
	}
	for class, w := range want {
		if got := b.dev.Content(bank, class, len(w)); !bytes.Equal(got, w) {
			b.problem("boot %d: U-Boot started bank %s, whose %s slot does not hold what it must (it differs at byte %d of %d)",
				boot, bank, class, firstDiff(got, w), len(w))
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// leftToVerify is how many bytes of the update's files the journal has not verified in the
// slots yet (all a start may download), and how far it verified the first step's payload.
func (b *board) leftToVerify() (left, verified int64) {
	left = b.u.size()
	rec, err := b.dev.Record()
	if err != nil {
		b.problem("reading the journal: %v", err)
		return left, 0
	}
	if rec.Deployment == nil {
		return left, 0
	}
	for i, st := range rec.Deployment.Steps {
		switch p := st.Progress; {
		case p.Done:
			left -= st.Source.Size
			if i == 0 {
				verified = math.MaxInt64
			}
		case p.Cursor != nil:
			left -= p.Download.Offset
			if i == 0 {
				verified = p.Cursor.Offset
			}
		}
	}
	return left, verified
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// checkFloors checks that the bootloader holds the image's anti-rollback floor exactly
// while it holds bank B confirmed.
func (b *board) checkFloors(boot int) {
	st, err := b.dev.BootState()
	if err != nil {
		b.problem("after boot %d: bootloader state: %v", boot, err)
		return
	}
	fl, err := b.dev.Floors()
	if err != nil {
		b.problem("after boot %d: bootloader floors: %v", boot, err)
		return
	}
	confirmed := st.Primary == "B" && st.Pending == "" && !st.IsBad("B")
	if confirmed != (fl["rootfs"] == securityCounter) {
		b.problem("after boot %d: the bootloader holds %+v with floors %v", boot, st, fl)
	}
}

// checkEnd checks the cut and the device and service at the end.
func (b *board) checkEnd() {
	b.checkCut()
	st, err := b.dev.BootState()
	if err != nil {
		b.problem("at the end: bootloader state: %v", err)
		return
	}
	rec, err := b.dev.Record()
	if err != nil {
		b.problem("at the end: journal: %v", err)
		return
	}
	if st.Pending != "" || rec.Deployment != nil {
		phase := ""
		if rec.Deployment != nil {
			phase = rec.Deployment.Phase
		}
		b.problem("at the end: still pending: bootloader %+v, journal deployment in phase %q", st, phase)
	}
	for class, old := range b.f.bankA {
		if !bytes.Equal(b.dev.Content("A", class, len(old)), old) {
			b.problem("at the end: bank A's %s slot was written", class)
		}
	}
	if !b.over() {
		b.problem("at the end: the service has no outcome; last report %v", b.twin.lastAgent())
	}
	if rc, _ := resultOf(b.twin.lastAgent()); (rc == adu.ResultApplySuccess) != (b.c.Scenario != Rollback) {
		b.problem("at the end: the service sees result code %d; last report %v", rc, b.twin.lastAgent())
	}
	if b.c.Scenario == Rollback {
		b.checkRolledBack(st, rec)
	} else {
		b.checkInstalled(st, rec)
	}
	if b.c.Scenario == MCU {
		b.checkMCU(rec)
	}
}

// checkMCU checks that the MCU runs the update's image confirmed, never booted a bad image,
// and was not sent again, beyond one frame, what it had acknowledged.
func (b *board) checkMCU(rec agent.Record) {
	m := b.dev.MCU()
	st := m.Stats()
	if st.BadBoots != 0 {
		b.problem("the MCU booted %d times without a good image", st.BadBoots)
	}
	if st.Resent > maxFrame {
		b.problem("%d bytes the MCU had acknowledged were sent again, more than a frame", st.Resent)
	}
	list, err := b.dev.MCUImages()
	if err != nil {
		b.problem("at the end: %v", err)
		return
	}
	var run *smp.SlotState
	for i := range list {
		if list[i].Active {
			run = &list[i]
		}
	}
	if run == nil || !run.Confirmed || !strings.HasPrefix(run.Version, "2.") || rec.MCUs[mcuClass] == nil {
		b.problem("at the end: the MCU's images %+v, the journal %+v", list, rec.MCUs)
	}
}

// maxFrame is the most data one upload frame carries (mcusim's default buffer).
const maxFrame = mcusim.DefaultBufSize

// checkCut checks that the power went once, at the operation the plan has at the cut point.
func (b *board) checkCut() {
	cuts, op := b.dev.Power().Cuts()
	switch {
	case b.c.Cut < 0 && cuts != 0:
		b.problem("the power went %d times without a cut armed", cuts)
	case b.c.Cut < 0:
	case cuts != 1:
		b.problem("the power went %d times, not once (the run did %d operations)", cuts, b.dev.Power().Ops())
	case b.plan != nil && op != b.plan.Ops[b.c.Cut]:
		b.problem("the cut fell on a %v; the uncut run had a %v there", op, b.plan.Ops[b.c.Cut])
	}
}

func (b *board) checkInstalled(st bootloader.State, rec agent.Record) {
	fl, _ := b.dev.Floors()
	if st.Primary != "B" || len(st.Bad) != 0 || fl["rootfs"] != securityCounter {
		b.problem("at the end: the bootloader holds %+v with floors %v, not bank B confirmed with floor %d", st, fl, securityCounter)
	}
	for class, want := range b.u.writes {
		if b.plan != nil {
			want = b.plan.BankB[class]
		}
		if !bytes.HasPrefix(b.dev.Content("B", class, len(want)), want) {
			b.problem("at the end: bank B's %s slot does not hold the update", class)
		}
	}
	if rec.Last == nil || !rec.Last.Succeeded || rec.Last.WorkflowID != workflowID || rec.SecurityFloors["rootfs"] != securityCounter {
		b.problem("at the end: the journal records %+v with floors %v", rec.Last, rec.SecurityFloors)
	}
	if got := b.twin.lastAgent()["installedUpdateId"]; got != b.u.id.InstalledUpdateID() {
		b.problem("at the end: the service sees %v installed", got)
	}
}

func (b *board) checkRolledBack(st bootloader.State, rec agent.Record) {
	fl, _ := b.dev.Floors()
	if st.Primary != "A" || !st.IsBad("B") || fl["rootfs"] != 0 {
		b.problem("at the end: the bootloader holds %+v with floors %v, not bank A confirmed and B bad", st, fl)
	}
	if rec.Last == nil || rec.Last.Succeeded || rec.Last.WorkflowID != workflowID ||
		(rec.Last.ExtendedResultCode != agent.ERCHealth && rec.Last.ExtendedResultCode != agent.ERCRolledBack) {
		b.problem("at the end: the journal records %+v, not the failed health check or rollback", rec.Last)
	}
	if !b.twin.reportedState(int(adu.StateFailed)) {
		b.problem("at the end: the failure was never reported (state Failed)")
	}
}
