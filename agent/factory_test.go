package agent

import (
	"encoding/json"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

// A device reports the factory image's update id from its first boot, and a deployment of
// that version is already installed (its installedCriteria match): nothing is downloaded.
func TestFactoryUpdateID(t *testing.T) {
	factory := &adu.UpdateID{Provider: "Contoso", Name: "Board", Version: "1.0"}
	withFactory := func(o *Options) { o.FactoryUpdateID = factory }
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	raw := payload(1, 64<<10)
	u := newUpdate(t, srv, "1.0", raw, makeImage(t, raw, "1.0", nil), manifestOpts{})
	u.url = srv.URL + "/gone" // a download would fail

	h := newHub(t)
	h.full(json.RawMessage(`{}`))
	if err := runAgent(t, d.agent(withFactory), h, h.settled()); err != nil {
		t.Fatal(err)
	}
	if got := h.agentReported()["installedUpdateId"]; got != factory.InstalledUpdateID() {
		t.Errorf("first boot: installedUpdateId %v, want %s", got, factory.InstalledUpdateID())
	}

	h.full(u.service("wf-factory", ""))
	if err := runAgent(t, d.agent(withFactory), h, succeeded(h, "wf-factory", u)); err != nil {
		t.Fatal(err)
	}
	last := lastState(h)
	steps := last["lastInstallResult"].(map[string]any)["stepResults"].(map[string]any)
	if rc := steps["step_0"].(map[string]any)["resultCode"]; rc != float64(adu.ResultInstallSkippedUpdateAlreadyInstalled) {
		t.Errorf("step result %v, want %d (already installed)", rc, adu.ResultInstallSkippedUpdateAlreadyInstalled)
	}

	// Without the factory id the bank holds nothing known: no installedUpdateId.
	d2 := newDevice(t, payload(1, 64<<10))
	h2 := newHub(t)
	h2.full(json.RawMessage(`{}`))
	if err := runAgent(t, d2.agent(nil), h2, h2.settled()); err != nil {
		t.Fatal(err)
	}
	if got, ok := h2.agentReported()["installedUpdateId"]; ok {
		t.Errorf("no factory id: installedUpdateId %v", got)
	}
}

func TestAduVer(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.0": "aduflash;agent/1.2.0", "v1.2.0": "aduflash;agent/1.2.0", "v0.4.0-3-gabc123": "aduflash;agent/0.4.0-3-gabc123",
		"dev": "aduflash;agent/0.0.0-dev", "": "aduflash;agent/0.0.0-dev", "abc123-dirty": "aduflash;agent/0.0.0-abc123-dirty",
	} {
		if got := AduVer(in); got != want {
			t.Errorf("AduVer(%q) = %q, want %q", in, got, want)
		}
	}
}
