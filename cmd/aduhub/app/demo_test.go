package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/agent"
)

// The demo is the README's main command: it must pass, and say what happened.
func TestDemo(t *testing.T) {
	for _, n := range []string{"1", "5"} {
		var out, errb bytes.Buffer
		work := t.TempDir()
		code := Run(context.Background(), []string{"aduhub", "demo", "--devices", n, "--work", work}, &out, &errb)
		if code != 0 {
			t.Fatalf("--devices %s: exit %d\n%s\n%s", n, code, out.String(), errb.String())
		}
		s := out.String()
		// The devices provisioned themselves through the hub's DPS: each kept its assignment.
		if _, err := os.Stat(filepath.Join(work, "devices", "device-001", agent.DPSCacheFile)); err != nil {
			t.Errorf("--devices %s: device-001 did not register through DPS: %v", n, err)
		}
		for _, want := range []string{
			"DPS enrollment group demo-devices",
			"2.0 confirmed on every device: running bank B, nothing pending",
			"3.0 rolled back on every device: bank A marked bad, running bank B, 2.0 reported as installed",
			"3.1 confirmed on every device: running bank A, nothing pending; each fetched",
			"0/32000020 ×" + n, "700 ×" + n, "demo passed",
			"MCU image 2.0.0 confirmed on every device's MCU (after the gateway confirmed bank B)",
			"2.1 reverted on every device's MCU by MCUboot: it runs 2.0.0 again; the gateway stayed on 2.0 without a reboot",
			"0/32000130 ×" + n,
		} {
			if !strings.Contains(s, want) {
				t.Errorf("--devices %s: output lacks %q:\n%s", n, want, s)
			}
		}
		if n == "1" {
			for _, want := range []string{"state 6 DeploymentInProgress", "bank B pending in U-Boot's environment", "U-Boot starts bank B",
				"health checks passed; bank confirmed", "state 255 Failed, resultCode 0, extendedResultCodes 32000020", "state 0 Idle, installedUpdateId 2.0, resultCode 0",
				"adaptive download: fetched", "reused 3.9 MiB from rootfs-b", "state 0 Idle, installedUpdateId 3.1, resultCode 700"} {
				if !strings.Contains(s, want) {
					t.Errorf("timeline lacks %q:\n%s", want, s)
				}
			}
		}
	}
}

func TestDemoUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"aduhub", "demo", "--devices", "0"}, &out, &errb); code != 2 {
		t.Errorf("--devices 0: exit %d", code)
	}
}
