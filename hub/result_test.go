package hub

import (
	"fmt"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

// A deployment succeeds on its success report only (spec §2.2, §6.3, §7.1): Idle with the
// update's installedUpdateId and 700 or 603 for its workflow, or, without a result, after
// state 6 and a change from another installedUpdateId (an embedded agent's first report from
// its new image). Idle with the update's id and a failure is a failure: what a device
// reports when it rolls back to the update it already ran.
func TestSuccessOnlyOnTheSuccessReport(t *testing.T) {
	v10 := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "1.0"}.InstalledUpdateID()
	const wf = `"workflow":{"action":3,"id":"DEP"}`
	const started = `{"state":6,` + wf + `,"lastInstallResult":{"resultCode":1,"extendedResultCodes":"00000000","stepResults":null}}`
	e := &joinEnv{svcEnv: startEnv(t, t.TempDir())}
	im, files := buildImport(t, "1.0", nil, payload(512, 1))
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name      string
		installed string   // what the device runs when the deployment is made
		reports   []string // DEP stands for the deployment's id
		want      DeviceState
		wantCode  int
		wantERCs  string
	}{{
		// aduagent redeploying 1.0 on a device that runs 1.0: the new bank fails its health
		// check, the device boots the old bank (also 1.0) and says so (docs/agent.md).
		name: "rolled back to the update it ran", installed: v10,
		reports: []string{started,
			`{"state":255,` + wf + `,"lastInstallResult":{"resultCode":0,"extendedResultCodes":"32000020","resultDetails":"health check failed"}}`,
			`{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `,"lastInstallResult":{"resultCode":0,"extendedResultCodes":"32000020","resultDetails":"health check failed"}}`},
		want: DeviceFailed, wantERCs: "32000020",
	}, {
		name: "Idle with the update's id and a failure, no Failed first", installed: v10,
		reports: []string{started,
			`{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `,"lastInstallResult":{"resultCode":0,"extendedResultCodes":"32000021"}}`},
		want: DeviceFailed, wantERCs: "32000021",
	}, {
		name: "Idle with the update's id and no result after state 6", installed: v10,
		reports: []string{started, `{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `}`},
		want:    DeviceFailed,
	}, {
		name: "700", installed: oldInstalled,
		reports: []string{started,
			`{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`},
		want: DeviceSucceeded, wantCode: 700, wantERCs: "00000000",
	}, {
		name: "603: already installed, no state 6", installed: v10,
		reports: []string{`{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `,"lastInstallResult":{"resultCode":603,"extendedResultCode":0}}`},
		want:    DeviceSucceeded, wantCode: 603, wantERCs: "00000000",
	}, {
		name: "700 for another workflow", installed: oldInstalled,
		reports: []string{started,
			`{"state":0,"workflow":{"action":3,"id":"another"},"installedUpdateId":` + strconvQuote(v10) + `,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`},
		want: DeviceInProgress,
	}, {
		// The FreeRTOS middleware's sample: state 6 for the workflow, a reset, then Idle with
		// the running image's id and nothing else.
		name: "embedded agent's first report from the new image", installed: oldInstalled,
		reports: []string{`{"state":6,` + wf + `}`, `{"state":0,"installedUpdateId":` + strconvQuote(v10) + `}`},
		want:    DeviceSucceeded,
	}, {
		name: "embedded agent back on the image it ran", installed: oldInstalled,
		reports: []string{`{"state":6,` + wf + `}`, `{"state":0,"installedUpdateId":` + strconvQuote(oldInstalled) + `}`},
		want:    DeviceFailed,
	}, {
		name: "embedded-style report on the update it already ran", installed: v10,
		reports: []string{`{"state":6,` + wf + `}`, `{"state":0,"installedUpdateId":` + strconvQuote(v10) + `}`},
		want:    DeviceFailed,
	}, {
		name: "Idle with the new update's id and no result after state 6", installed: oldInstalled,
		reports: []string{started, `{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `}`},
		want:    DeviceSucceeded,
	}, {
		name: "Idle with the update's id before the deployment started", installed: oldInstalled,
		reports: []string{`{"state":0,` + wf + `,"installedUpdateId":` + strconvQuote(v10) + `}`},
		want:    DeviceInProgress,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dev, ring := fmt.Sprintf("dev%d", i), fmt.Sprintf("r%d", i)
			e.reportVia(t, dev, agentProps(ring, "toaster", tc.installed))
			dep, err := e.svc.Deploy(u.UpdateID, map[string]string{"ring": ring})
			if err != nil {
				t.Fatal(err)
			}
			// From the start, the deployment shows what the device runs.
			if d := deviceStatus(t, e.svc, dep.ID, dev); d.InstalledUpdateID != tc.installed {
				t.Fatalf("installed at the start %q, want %q", d.InstalledUpdateID, tc.installed)
			}
			for _, r := range tc.reports {
				e.reportVia(t, dev, strings.ReplaceAll(r, "DEP", dep.ID))
			}
			d := wantState(t, e.svc, dep.ID, dev, tc.want)
			if d.ResultCode != tc.wantCode || d.ExtendedResultCodes != tc.wantERCs {
				t.Fatalf("result %d %q, want %d %q", d.ResultCode, d.ExtendedResultCodes, tc.wantCode, tc.wantERCs)
			}
		})
	}
}
