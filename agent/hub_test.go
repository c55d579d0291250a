package agent

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/testwait"
)

// runBackground runs a.Run until stopped. done yields Run's error once; stop cancels and
// returns it (also after done was read).
func runBackground(a *Agent, h Hub) (stop func() error, done <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	finished := make(chan struct{})
	var err error
	go func() {
		err = a.Run(ctx, h)
		close(finished)
		errc <- err
	}()
	return func() error {
		cancel()
		<-finished
		return err
	}, errc
}

func waitDone(t *testing.T, done <-chan error) error {
	t.Helper()
	return testwait.Recv(t, done, 15*time.Second, "end of the agent's run")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testwait.Until(t, 15*time.Second, what, cond)
}

// Every branch of the workflow (spec §6) through the hub over a real MQTT connection:
// startup, ack, in progress, success after the reboot, failure, cancel mid-download,
// cancel with nothing running, retry, replacement, duplicates after a reconnect.
func TestWorkflowOverMQTT(t *testing.T) {
	v1 := payload(1, 64<<10)
	d := newDevice(t, v1)
	e := newHub(t)
	srv := newServer(t)

	raw2 := payload(2, 128<<10)
	u2 := newUpdate(t, srv, "2.0", raw2, makeImage(t, raw2, "2.0", nil), manifestOpts{})
	slow := newUpdate(t, srv, "9.0", raw2, makeImage(t, raw2, "9.0", nil), manifestOpts{})
	slow.url = srv.put("slow.aduimg", slow.file)

	// 1. Startup with no deployment: device properties, Idle.
	e.connect()
	a := d.agent(nil)
	stop, done := runBackground(a, e)
	waitFor(t, "startup report", func() bool { ag := e.agentReported(); return ag != nil && ag["deviceProperties"] != nil })
	if got := e.all()[0]; got != `{"deviceUpdate":{"__t":"c","agent":{"deviceProperties":{"manufacturer":"Contoso","model":"Board","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2","aduVer":"aduflash;agent/0.0.0-dev"},"compatPropertyNames":"manufacturer,model","state":0}}}` {
		t.Errorf("startup report %s", got)
	}
	if e.h.ModelID(deviceID) != adu.ModelContractV2 {
		t.Errorf("model-id %q", e.h.ModelID(deviceID))
	}

	// 2. Cancel with nothing running: Idle with the cancel workflow (once).
	e.setService(cancelService())
	waitFor(t, "cancel idle", func() bool { return wfID(e.agentReported()) == adu.NoDeployment })

	// 3. A deployment that is cancelled mid-download (it stalls until released): Idle,
	// resultCode -1, its own workflow.
	release := srv.stall("slow.aduimg")
	e.setService(slow.service("wf-slow", ""))
	waitFor(t, "state 6", func() bool { ag := e.agentReported(); return stateOf(ag) == 6 && wfID(ag) == "wf-slow" })
	waitFor(t, "download started", func() bool { return srv.Hits.Load() > 0 })
	e.setService(cancelService())
	waitFor(t, "cancelled", func() bool {
		ag := e.agentReported()
		lir, _ := ag["lastInstallResult"].(map[string]any)
		return stateOf(ag) == 0 && wfID(ag) == "wf-slow" && lir["resultCode"] == float64(-1)
	})
	if st := d.bootState(); st.Pending != "" {
		t.Fatalf("pending after cancel: %+v", st)
	}

	// 4. A second deployment while the first one downloads is rejected in the ack with no
	// state report (TestBusyRejected follows it further); after the first is cancelled, it
	// runs.
	e.setService(slow.service("wf-r1", ""))
	waitFor(t, "wf-r1 in progress", func() bool { return wfID(e.agentReported()) == "wf-r1" })
	n := len(e.all())
	v := e.setService(u2.service("wf-2", ""))
	waitFor(t, "wf-2 rejected", func() bool { code, _ := ackOf(e, v); return code == adu.AckRejected })
	for _, p := range e.all()[n:] {
		if strings.Contains(p, `"state"`) {
			t.Errorf("a state report for the rejected deployment: %s", p)
		}
	}
	e.setService(cancelService())
	waitFor(t, "wf-r1 cancelled", func() bool { ag := e.agentReported(); return stateOf(ag) == 0 && wfID(ag) == "wf-r1" })
	e.setService(u2.service("wf-2", ""))
	if err := waitDone(t, done); !errors.Is(err, ErrRebooting) {
		t.Fatalf("run after wf-2: %v", err)
	}
	if d.bootState().Pending != "B" {
		t.Fatalf("wf-2 not pending: %+v", d.bootState())
	}
	release()

	// 5. Reboot into B: success is reported after the health check.
	d.reset()
	e.connect()
	stop, done = runBackground(d.agent(nil), e)
	waitFor(t, "success", func() bool {
		ag := e.agentReported()
		return stateOf(ag) == 0 && wfID(ag) == "wf-2" && ag["installedUpdateId"] == u2.id.InstalledUpdateID()
	})

	// 6. Duplicates after a reconnect (IoT Hub drops the connection): nothing runs again.
	// First the success report's own answer must be in: a report whose answer the drop
	// loses is sent again after the reconnect, rightly.
	waitFor(t, "the answer to the success report", func() bool {
		for _, p := range e.all() {
			if strings.Contains(p, `"state":0`) && strings.Contains(p, `"wf-2"`) && strings.Contains(p, `"installedUpdateId"`) {
				return true
			}
		}
		return false
	})
	hits := srv.Hits.Load()
	n = len(e.all())
	if err := e.h.Disconnect(deviceID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnect", func() bool { return e.h.Connected(deviceID) })
	time.Sleep(300 * time.Millisecond)
	for _, p := range e.all()[n:] {
		if strings.Contains(p, `"agent"`) {
			t.Errorf("report after a reconnect with nothing new: %s", p)
		}
	}
	if srv.Hits.Load() != hits {
		t.Error("the finished deployment downloaded again after the reconnect")
	}

	// 7. Failure (404), then the operator's retry with a new retryTimestamp re-runs it.
	raw3 := payload(3, 64<<10)
	u3 := newUpdate(t, srv, "3.0", raw3, makeImage(t, raw3, "3.0", nil), manifestOpts{})
	good := u3.url
	u3.url += ".gone"
	e.setService(u3.service("wf-3", ""))
	waitFor(t, "failed then idle", func() bool {
		ag := e.agentReported()
		lir, _ := ag["lastInstallResult"].(map[string]any)
		return stateOf(ag) == 0 && wfID(ag) == "wf-3" && lir["resultCode"] == float64(0) && ag["installedUpdateId"] == u2.id.InstalledUpdateID()
	})
	sawFailed := false
	for _, p := range e.all() {
		if strings.Contains(p, `"state":255`) && strings.Contains(p, "wf-3") {
			sawFailed = true
		}
	}
	if !sawFailed {
		t.Error("no Failed (255) report before Idle")
	}
	// The same id again (no retryTimestamp): ignored.
	hits = srv.Hits.Load()
	e.setService(u3.service("wf-3", ""))
	time.Sleep(200 * time.Millisecond)
	if srv.Hits.Load() != hits {
		t.Error("a failed deployment re-ran without a retry")
	}
	u3.url = good
	e.setService(u3.service("wf-3", "2026-11-22T12:00:00Z"))
	if err := waitDone(t, done); !errors.Is(err, ErrRebooting) {
		t.Fatalf("retry run: %v", err)
	}
	if d.bootState().Pending != "A" {
		t.Fatalf("retry not pending: %+v", d.bootState())
	}
	stop()
	var retried bool
	for _, p := range e.all() {
		if strings.Contains(p, `"state":6`) && strings.Contains(p, `"retryTimestamp":"2026-11-22T12:00:00Z"`) {
			retried = true
		}
	}
	if !retried {
		t.Error("the retry's state 6 does not echo its retryTimestamp")
	}
}

// Model ;3: the root-key package is fetched, validated, stored and applied; a signing key
// it disables is refused; a failed fetch falls back to the stored package.
func TestRootKeyPackageModelV3(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	e := newHub(t)
	srv := newServer(t)
	k := getKeys(t)
	pkgOK, err := hub.SignRootKeyPackage([]hub.RootPrivateKey{k.signer.RootPrivateKey()}, hub.RootKeyPackageOptions{Version: 1, Published: 1.7e9})
	if err != nil {
		t.Fatal(err)
	}
	pkgDeny, err := hub.SignRootKeyPackage([]hub.RootPrivateKey{k.signer.RootPrivateKey()}, hub.RootKeyPackageOptions{Version: 2, Published: 1.7e9,
		DisabledSigningKeys: [][32]byte{k.signer.SigningKeyHash()}})
	if err != nil {
		t.Fatal(err)
	}
	okURL := srv.put("rootkeys-1.json", pkgOK)
	denyURL := srv.put("rootkeys-2.json", pkgDeny)
	raw := payload(2, 64<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	svc := func(id, pkgURL string) json.RawMessage {
		var m map[string]any
		json.Unmarshal(u.service(id, ""), &m)
		m["rootKeyPackageUrl"] = pkgURL
		b, _ := json.Marshal(m)
		return b
	}
	e.model = adu.ModelV3
	e.connect()
	mod := func(o *Options) {
		o.ModelID = adu.ModelV3
		o.DeviceInformation = func() DeviceInformation { return DeviceInformation{OSName: "TestOS", TotalMemory: 1024} }
	}
	stop, _ := runBackground(d.agent(mod), e)
	defer stop()
	// deviceInformation is reported with the ;3 model.
	waitFor(t, "deviceInformation", func() bool {
		tw, _ := e.h.Twin(deviceID)
		return strings.Contains(string(tw), `"osName":"TestOS"`)
	})

	// Each refusal is a rejected request: ack 406 with the code, no state reported.
	states := len(stateReports(e)) // the startup's Idle
	rejected := func(id, pkgURL string) string {
		t.Helper()
		v := e.setService(svc(id, pkgURL))
		waitFor(t, id+" answered", func() bool { code, _ := ackOf(e, v); return code != 0 })
		code, desc := ackOf(e, v)
		if code != adu.AckRejected {
			t.Errorf("%s: ack %d %q", id, code, desc)
		}
		return desc
	}
	// The deny package disables the signing key.
	if desc := rejected("wf-deny", denyURL); !strings.HasPrefix(desc, adu.ERCSigningKeyDisabled.String()) {
		t.Errorf("deny: %q; sent %v", desc, e.all())
	}
	// The package store keeps version 2; the version-1 package is refused as older, and a
	// missing package URL falls back to the stored one (still denying).
	if desc := rejected("wf-gone", srv.URL+"/missing.json"); !strings.HasPrefix(desc, adu.ERCSigningKeyDisabled.String()) {
		t.Errorf("with the package URL gone, the stored package should still deny: %q", desc)
	}
	if desc := rejected("wf-old", okURL); !strings.HasPrefix(desc, adu.ERCRootKeyPackageParse.String()) || !strings.Contains(desc, "older") {
		t.Errorf("older package: %q", desc)
	}
	if s := stateReports(e); len(s) != states {
		t.Errorf("state reported for rejected requests: %s", s[states:])
	}
}
