package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/health"
)

func fastRetry() download.RetryPolicy {
	return download.RetryPolicy{Attempts: 3, Sleep: func(ctx context.Context, d time.Duration) error { return ctx.Err() }}
}

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lastAgent returns the last reported agent object that has a state.
func lastState(h *testHub) map[string]any {
	rs := h.agentReports()
	for i := len(rs) - 1; i >= 0; i-- {
		if _, ok := rs[i]["state"]; ok {
			return rs[i]
		}
	}
	return nil
}

func stateOf(ag map[string]any) int {
	if ag == nil {
		return -1
	}
	f, _ := ag["state"].(float64)
	return int(f)
}

func wfID(ag map[string]any) string {
	w, _ := ag["workflow"].(map[string]any)
	id, _ := w["id"].(string)
	return id
}

// succeeded tells whether h's reported properties show the deployment id finished with u.
func succeeded(h *testHub, id string, u *update) func() bool {
	return func() bool {
		ag := lastState(h)
		return stateOf(ag) == 0 && wfID(ag) == id && ag["installedUpdateId"] == u.id.InstalledUpdateID()
	}
}

// The whole loop on simulated hardware: deploy v2 (download, write into NAND bank B,
// pending, reboot, health check, confirm, success reported), then v3 whose health check
// fails (reboot into A, MarkBad, reboot back into B, Failed then Idle with v2 reported).
func TestSimulatedUpdateThenRollback(t *testing.T) {
	v1 := payload(1, 300<<10)
	d := newDevice(t, v1)
	srv := newServer(t)
	v2raw := payload(2, 400<<10)
	u2 := newUpdate(t, srv, "2.0", v2raw, makeImage(t, v2raw, "2.0", nil), manifestOpts{})
	h := newHub(t)

	// Deploy v2: the agent writes B, marks it pending and asks for a reboot.
	h.full(u2.service("wf-2", ""))
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("first run: %v", err)
	}
	if st := d.bootState(); st.Pending != "B" || st.Primary != "B" {
		t.Fatalf("bootloader after install: %+v", st)
	}
	if !d.slotHolds("B", v2raw) || !d.slotHolds("A", v1) {
		t.Fatal("slots after install: B must hold v2, A v1")
	}
	rs := h.agentReports()
	if len(rs) < 2 || rs[0]["deviceProperties"] == nil || stateOf(rs[len(rs)-1]) != 6 || wfID(rs[len(rs)-1]) != "wf-2" {
		t.Fatalf("reports before the reboot: %v", h.all())
	}
	served := srv.Sent.Load()
	if served != int64(len(u2.file)) {
		t.Errorf("served %d bytes for a %d-byte file", served, len(u2.file))
	}

	// Reboot: U-Boot tries B; the agent checks health, confirms, reports success.
	if b := d.reset(); b.Bank != "B" {
		t.Fatalf("booted %s", b.Bank)
	}
	h.full(u2.service("wf-2", ""))
	if err := runAgent(t, d.agent(nil), h, succeeded(h, "wf-2", u2)); err != nil {
		t.Fatalf("second run: %v\n%v", err, h.all())
	}
	if st := d.bootState(); st.Pending != "" || st.Primary != "B" || len(st.Bad) != 0 {
		t.Fatalf("bootloader after confirm: %+v", st)
	}
	ag := lastState(h)
	lir, _ := ag["lastInstallResult"].(map[string]any)
	if lir["resultCode"] != float64(700) {
		t.Errorf("success report: %v", ag)
	}
	if srv.Sent.Load() != served {
		t.Error("the confirmed update was downloaded again")
	}

	// v3's application fails its health check in the new bank.
	v3raw := payload(3, 200<<10)
	u3 := newUpdate(t, srv, "3.0", v3raw, makeImage(t, v3raw, "3.0", nil), manifestOpts{})
	d.healthy = func(bank string) bool { return bank != "A" }
	h.patch(u3.service("wf-3", ""))
	a := d.agent(nil)
	if err := runAgent(t, a, h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("v3 install: %v", err)
	}
	if st := d.bootState(); st.Pending != "A" {
		t.Fatalf("after v3 install: %+v", st)
	}
	if b := d.reset(); b.Bank != "A" {
		t.Fatalf("booted %s for the v3 trial", b.Bank)
	}
	// In A, the health check fails: A is marked bad and the agent reboots into B.
	a = d.agent(nil)
	h.full(u3.service("wf-3", ""))
	if err := runAgent(t, a, h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("trial of v3: %v", err)
	}
	if a.Healthy() {
		t.Error("the agent still claims health after failed checks (the watchdog would keep feeding)")
	}
	if st := d.bootState(); st.Primary != "B" || !st.IsBad("A") || st.Pending != "" {
		t.Fatalf("after failed health: %+v", st)
	}
	if b := d.reset(); b.Bank != "B" {
		t.Fatalf("booted %s after rollback", b.Bank)
	}
	n := len(h.agentReports())
	h.full(u3.service("wf-3", ""))
	if err := runAgent(t, d.agent(nil), h, func() bool {
		ag := lastState(h)
		return len(h.agentReports()) > n && stateOf(ag) == 0 && wfID(ag) == "wf-3"
	}); err != nil {
		t.Fatal(err)
	}
	// Failed (255) then Idle with the old installedUpdateId, both with the health ERC.
	rs = h.agentReports()[n:]
	var states []int
	for _, r := range rs {
		if _, ok := r["state"]; ok {
			states = append(states, stateOf(r))
		}
	}
	if fmt.Sprint(states[len(states)-2:]) != "[255 0]" {
		t.Fatalf("states after rollback %v: %v", states, rs)
	}
	last := rs[len(rs)-1]
	if last["installedUpdateId"] != u2.id.InstalledUpdateID() {
		t.Errorf("idle after failure reports %v, want v2", last["installedUpdateId"])
	}
	lir, _ = last["lastInstallResult"].(map[string]any)
	if lir["resultCode"] != float64(0) || lir["extendedResultCode"] != float64(ERCHealth.Int32()) {
		t.Errorf("failure result %v, want 0 / %s", lir, ERCHealth)
	}
	if !strings.Contains(fmt.Sprint(lir["resultDetails"]), "app did not come up") {
		t.Errorf("details %v", lir["resultDetails"])
	}
	rec := d.agent(nil).Record()
	if rec.Banks["B"] == nil || rec.Banks["B"].UpdateID == nil || *rec.Banks["B"].UpdateID != u2.id || rec.Last.Succeeded {
		t.Errorf("record %+v", rec)
	}
	// The same deployment delivered again is not run again, and nothing is reported when the
	// twin already shows its outcome.
	n = len(h.agentReports())
	hits := srv.Hits.Load()
	h.full(u3.service("wf-3", ""))
	if err := runAgent(t, d.agent(nil), h, h.settled()); err != nil {
		t.Fatal(err)
	}
	if got := h.agentReports()[n:]; srv.Hits.Load() != hits || len(got) != 1 || got[0]["deviceProperties"] == nil { // the startup report only
		t.Errorf("a finished deployment ran again: %d requests, reports %v", srv.Hits.Load()-hits, got)
	}
}

// A slow health check after the reboot keeps the watchdog fed while it runs (the checks
// have their own deadline).
func TestHeartbeatDuringHealthChecks(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	raw := payload(2, 64<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	h := newHub(t)
	h.full(u.service("wf", ""))
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatal(err)
	}
	d.reset()
	var beats atomic.Int64
	var during int64
	a := d.agent(func(o *Options) {
		o.HeartbeatInterval = 2 * time.Millisecond
		o.Heartbeat = func() { beats.Add(1) }
		o.HealthOptions.Exec = func(ctx context.Context, at health.Attempt) (int, error) {
			start := beats.Load()
			time.Sleep(60 * time.Millisecond)
			during = beats.Load() - start
			return 0, nil
		}
	})
	if err := a.Boot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if during < 5 {
		t.Errorf("%d heartbeats during a 60 ms health check at a 2 ms interval", during)
	}
	if st := d.bootState(); st.Pending != "" || st.Primary != "B" {
		t.Errorf("not confirmed: %+v", st)
	}
}

// One agent per state folder: a second one (aduagent install while the daemon runs) is
// refused until the first closes.
func TestStateDirLock(t *testing.T) {
	d, dir := newDevice(t, nil), t.TempDir() // a state folder on the OS's file system, which locks it
	mk := func() (*Agent, error) {
		return New(Options{Layout: d.Layout(), Bootloader: d.backend(), Settings: Settings{StateDir: dir, Manufacturer: "Contoso", Model: "Board"}})
	}
	a, err := mk()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mk(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second agent: %v", err)
	}
	a.Close()
	b, err := mk()
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	b.Close()
}
