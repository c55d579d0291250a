package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/golden"
)

// checkPatches compares the reported patches with testdata/golden/name, one per line.
func checkPatches(t *testing.T, name string, patches []string) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", "golden", name), strings.Join(patches, "\n")+"\n")
}

// The reported patches of a whole deployment, byte for byte, for both wire forms: the
// contract model ;2 (extendedResultCode integers, no deviceInformation) and the model ;3
// (extendedResultCodes strings). Success: startup, ack, in progress; after the reboot:
// startup, ack, Idle + installedUpdateId + 700. Failure: Failed then Idle with the old id.
func TestGoldenReports(t *testing.T) {
	for _, model := range []string{adu.ModelContractV2, adu.ModelV3} {
		suffix := "v2"
		if model == adu.ModelV3 {
			suffix = "v3"
		}
		mod := func(o *Options) {
			o.ModelID = model
			o.DeviceInformation = func() DeviceInformation {
				return DeviceInformation{SWVersion: "1.0", OSName: "Poky 5.0", ProcessorArchitecture: "arm", ProcessorManufacturer: "ARM", TotalMemory: 512000, TotalStorage: 4000000}
			}
		}
		d := newDevice(t, payload(1, 64<<10))
		srv := newServer(t)
		raw := payload(2, 64<<10)
		u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
		h := newHub(t)
		h.full(u.service("6b83a1f2-golden", ""))
		if err := runAgent(t, d.agent(mod), h, nil); !errors.Is(err, ErrRebooting) {
			t.Fatal(err)
		}
		d.reset()
		h.full(u.service("6b83a1f2-golden", ""))
		if err := runAgent(t, d.agent(mod), h, succeeded(h, "6b83a1f2-golden", u)); err != nil {
			t.Fatal(err)
		}
		checkPatches(t, "success-"+suffix+".txt", h.all())

		// A failure: the file is gone (404).
		d = newDevice(t, payload(1, 64<<10))
		h = newHub(t)
		u.url = srv.URL + "/gone"
		h.full(u.service("6b83a1f2-fail", ""))
		if err := runAgent(t, d.agent(mod), h, failedThenIdle(h, "6b83a1f2-fail")); err != nil {
			t.Fatal(err)
		}
		checkPatches(t, "failure-"+suffix+".txt", h.all())
	}
}
