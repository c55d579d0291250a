package app

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/hub"
)

// dpsConf is the [agent] connection of a device of the enrollment group "toasters" of h:
// DPS and the hub are the same stand-in, over TLS with its CA.
func dpsConf(h *testHub, regID string) string {
	return "provisioning = \"dps\"\nid_scope = " + strconv.Quote(h.IDScope()) +
		"\nregistration_id = " + strconv.Quote(regID) +
		"\nglobal_endpoint = " + strconv.Quote(h.Addr().String()) +
		"\ngroup_key = " + strconv.Quote(testDeviceKey) + "\n" +
		h.conf[strings.Index(h.conf, "hub_address"):] // hub_address and ca_file
}

// TestRunProvisionsThroughDPS: the agent registers with DPS (a group enrollment, its key
// derived), keeps the assignment, connects to the assigned hub and reports; after the hub
// deleted the device, the next start's connection is refused and the agent registers again.
func TestRunProvisionsThroughDPS(t *testing.T) {
	h := newTestHub(t)
	if err := h.AddEnrollment(hub.Enrollment{ID: "toasters", Group: true, Key: testDeviceKey}); err != nil {
		t.Fatal(err)
	}
	fx := newAgentFixture(t, dpsConf(h, "toaster-9"))
	isIdle := func(a *reportedAgent) bool { return a.State != nil }

	ra := startRun(t, fx)
	waitReportedOf(t, h, "toaster-9", isIdle)
	if code, logs := ra.stop(); code != 0 || !strings.Contains(logs, `msg="DPS assigned the device" hub=localhost device=toaster-9`) {
		t.Fatalf("exit %d, logs:\n%s", code, logs)
	}
	cache := filepath.Join(fx.stateDir, agent.DPSCacheFile)
	a, ok, err := dps.LoadAssignment(cache, h.IDScope(), "toaster-9")
	if err != nil || !ok || a.DeviceID != "toaster-9" || a.AssignedHub != "localhost" {
		t.Fatalf("stored assignment %+v, %v, %v", a, ok, err)
	}

	// A restart uses the stored assignment: no registration.
	ra = startRun(t, fx)
	waitReportedOf(t, h, "toaster-9", isIdle)
	if _, logs := ra.waitLog("agent running"); strings.Contains(logs, "registering with DPS") {
		t.Errorf("registered again although the stored assignment works:\n%s", logs)
	}

	// The device is deleted from the hub: the stored assignment is refused, and the agent
	// registers again (which registers the device anew).
	if err := h.RemoveDevice("toaster-9"); err != nil {
		t.Fatal(err)
	}
	ra = startRun(t, fx)
	waitReportedOf(t, h, "toaster-9", isIdle)
	code, logs := ra.waitLog("agent running")
	if code != 0 || !strings.Contains(logs, "the hub refused the stored DPS assignment") || !strings.Contains(logs, "registering with DPS") {
		t.Errorf("exit %d; no re-registration in the logs:\n%s", code, logs)
	}
}

// TestRunDPSRefused: a device that is not enrolled is refused by DPS and keeps retrying
// (it may be enrolled later) without connecting.
func TestRunDPSRefused(t *testing.T) {
	h := newTestHub(t)
	fx := newAgentFixture(t, dpsConf(h, "stranger"))
	ra := startRun(t, fx)
	code, logs := ra.waitLog("cannot connect to IoT Hub; retrying")
	if code != 0 || !strings.Contains(logs, "dps: connect failed") {
		t.Errorf("exit %d, logs:\n%s", code, logs)
	}
}
