package hub

import (
	"errors"
	"testing"
)

// TestReportedAgent: the device's reported deviceUpdate.agent as encoding/json decodes it,
// nil before any report, ErrUnknownDevice for a device that is not registered.
func TestReportedAgent(t *testing.T) {
	h := newHub(t, Options{})
	if err := h.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	if ag, err := h.ReportedAgent("dev1"); ag != nil || err != nil {
		t.Fatalf("before a report: %v, %v", ag, err)
	}
	if _, err := h.applyReported("dev1", []byte(`{"deviceUpdate":{"__t":"c","agent":{"state":6,"workflow":{"id":"w1"}}}}`)); err != nil {
		t.Fatal(err)
	}
	ag, err := h.ReportedAgent("dev1")
	if err != nil || ag["state"] != float64(6) || ag["workflow"].(map[string]any)["id"] != "w1" {
		t.Fatalf("after a report: %v, %v", ag, err)
	}
	if _, err := h.ReportedAgent("nobody"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("unknown device: %v", err)
	}
}
