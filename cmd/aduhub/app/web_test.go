package app

import (
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
)

// What the page and aduhub device list say a device is doing, from its connection and its
// result in the deployment it follows.
func TestActivity(t *testing.T) {
	dep := func(cancelled bool, r hub.DeviceStatus) *hub.DeploymentStatus {
		return &hub.DeploymentStatus{Deployment: hub.Deployment{ID: "d", UpdateID: adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "2.0"},
			Devices: []string{"a", "dev", "z"}, Cancelled: cancelled},
			Results: []hub.DeviceStatus{{DeviceID: "a"}, r, {DeviceID: "z"}}}
	}
	started := hub.DeviceStatus{DeviceID: "dev", State: hub.DeviceInProgress, Started: true}
	for _, tc := range []struct {
		name string
		d    deviceInfo
		dep  *hub.DeploymentStatus
		want string
	}{
		{"connected, started", deviceInfo{DeviceID: "dev", Connected: true}, dep(false, started), "installing Contoso/Toaster/2.0"},
		{"left cleanly, started", deviceInfo{DeviceID: "dev", LeftCleanly: true}, dep(false, started), "rebooting into Contoso/Toaster/2.0"},
		{"left cleanly with bank B pending", deviceInfo{DeviceID: "dev", LeftCleanly: true, Banks: &agentBanks{Running: "A", Primary: "B", Pending: "B"}},
			dep(false, started), "rebooting into bank B (Contoso/Toaster/2.0)"},
		{"lost, started", deviceInfo{DeviceID: "dev"}, dep(false, started), "connection lost while installing Contoso/Toaster/2.0"},
		{"not started", deviceInfo{DeviceID: "dev", LeftCleanly: true}, dep(false, hub.DeviceStatus{DeviceID: "dev", State: hub.DeviceInProgress}), ""},
		{"failed", deviceInfo{DeviceID: "dev", LeftCleanly: true}, dep(false, hub.DeviceStatus{DeviceID: "dev", State: hub.DeviceFailed, Started: true}), ""},
		{"cancelled deployment", deviceInfo{DeviceID: "dev", LeftCleanly: true}, dep(true, started), ""},
		{"no deployment", deviceInfo{DeviceID: "dev", LeftCleanly: true}, nil, ""},
		{"not in it", deviceInfo{DeviceID: "other", LeftCleanly: true}, dep(false, started), ""},
	} {
		if got := activity(tc.d, tc.dep); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// The page and aduhub status say the same: a superseded result names the deployment that
// replaced it; times carry their zone.
func TestResultAndTimeText(t *testing.T) {
	r := hub.DeviceStatus{State: hub.DeviceSucceeded, SupersededBy: "6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f", Removed: true}
	if got, want := resultText(r), "Succeeded (superseded by 6f1c2d0e-3a4b-4c5d-8e9f-0a1b2c3d4e5f) (device removed)"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	tm := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if got, want := timeText(tm), tm.Local().Format("2006-01-02 15:04:05 MST"); got != want || len(got) <= len("2006-01-02 15:04:05 ") {
		t.Errorf("%q, want %q", got, want)
	}
	if timeText(time.Time{}) != "—" {
		t.Error("zero time")
	}
}
