package hub

import (
	"reflect"
	"slices"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// joinEnv is a started env with update 1.0 imported and a deployment of it
// to ring "a", made while only the device "seed" (ring a) had reported.
type joinEnv struct {
	*svcEnv
	u   *Update
	dep *Deployment
}

// agentProps is a startup report of a device of ring and model, with installedUpdateId installed.
func agentProps(ring, model, installed string) string {
	return `{"deviceProperties":{"manufacturer":"contoso","model":"` + model + `","ring":"` + ring +
		`","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2"},"compatPropertyNames":"manufacturer,model",` +
		`"state":0,"installedUpdateId":` + strconvQuote(installed) + `}`
}

var oldInstalled = adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "0.9"}.InstalledUpdateID()

func startJoinEnv(t *testing.T, dir string) *joinEnv {
	t.Helper()
	e := &joinEnv{svcEnv: startEnv(t, dir)}
	im, files := buildImport(t, "1.0", nil, payload(2048, 1))
	var err error
	if e.u, err = e.svc.Import(im, files); err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "seed", agentProps("a", "toaster", oldInstalled))
	if e.dep, err = e.svc.Deploy(e.u.UpdateID, map[string]string{"ring": "a"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(e.dep.Devices, []string{"seed"}) {
		t.Fatalf("deployment targets %v", e.dep.Devices)
	}
	return e
}

// reportVia registers the device if needed and applies a deviceUpdate.agent
// report through the hub (as if sent over MQTT), then waits for the joins it
// started.
func (e *joinEnv) reportVia(t *testing.T, id, agent string) {
	t.Helper()
	if _, err := e.hub.Twin(id); err != nil {
		if err := e.hub.RegisterDevice(id, key1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.hub.applyReported(id, []byte(`{"deviceUpdate":{"__t":"c","agent":`+agent+`}}`)); err != nil {
		t.Fatal(err)
	}
	e.settle()
}

// settle waits for the joins started so far (they were started before the
// reports that caused them were answered).
func (e *joinEnv) settle() { e.svc.joins.Wait() }

func (e *joinEnv) devices(t *testing.T, dep string) []string {
	t.Helper()
	st, err := e.svc.Status(dep)
	if err != nil {
		t.Fatal(err)
	}
	return st.Devices
}

// wantNotJoined checks that the device is in no deployment and got no service object.
func (e *joinEnv) wantNotJoined(t *testing.T, id string) {
	t.Helper()
	for _, st := range e.svc.Deployments() {
		if slices.Contains(st.Devices, id) {
			t.Fatalf("%s was added to %s: %v", id, st.ID, st.Devices)
		}
	}
	if cur := e.svc.CurrentDeployment(id); cur != "" {
		t.Fatalf("%s follows %s", id, cur)
	}
	if s := desiredService(t, e.hub, id); s != nil {
		t.Fatalf("%s got a service object: %v", id, s)
	}
}

// A device registered after the Deploy gets the deployment when its startup
// report arrives (over MQTT), and its result is followed to Succeeded; so do
// a registered device whose first report comes after the Deploy and one whose
// properties change so that it now matches.
func TestJoinLateDevice(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	dep := e.dep
	installed := e.u.UpdateID.InstalledUpdateID()

	if err := e.hub.RegisterDevice("late", key1); err != nil {
		t.Fatal(err)
	}
	late := iothubtest.Dial(t, cfgFor(e.hub, "late", key1))
	if u := iothubtest.NextDesired(t, late); !u.Full {
		t.Fatalf("first twin event %+v", u)
	}
	report(t, late, agentProps("a", "toaster", oldInstalled))
	up := iothubtest.NextDesired(t, late)
	des, err := adu.ParseDesired(up.Patch)
	if err != nil || des.Service == nil || des.Service.Workflow == nil {
		t.Fatalf("%s: %v", up.Patch, err)
	}
	sv := des.Service
	if sv.Workflow.Action != adu.ActionProcessDeployment || sv.Workflow.ID != dep.ID || sv.Workflow.RetryTimestamp != "" ||
		sv.UpdateManifest != e.u.Manifest || sv.UpdateManifestSignature != e.u.Signature || !reflect.DeepEqual(sv.FileURLs, dep.FileURLs) {
		t.Fatalf("service %+v", sv)
	}
	// Exactly the object Deploy wrote to the device it targeted.
	if got, want := desiredService(t, e.hub, "late"), desiredService(t, e.hub, "seed"); !reflect.DeepEqual(got, want) {
		t.Fatalf("joined device's service %v, Deploy wrote %v", got, want)
	}
	if d := wantState(t, e.svc, dep.ID, "late", DeviceInProgress); d.Started || d.AgentState != nil {
		t.Fatalf("%+v", d)
	}
	if got := e.devices(t, dep.ID); !slices.Equal(got, []string{"late", "seed"}) {
		t.Fatalf("devices %v", got)
	}
	if e.svc.CurrentDeployment("late") != dep.ID {
		t.Fatal("late does not follow the deployment")
	}

	report(t, late, `{"state":6,"workflow":{"action":3,"id":"`+dep.ID+`"}}`)
	if d := wantState(t, e.svc, dep.ID, "late", DeviceInProgress); !d.Started {
		t.Fatalf("%+v", d)
	}
	report(t, late, `{"state":0,"workflow":{"action":3,"id":"`+dep.ID+`"},"installedUpdateId":`+strconvQuote(installed)+
		`,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`)
	if d := wantState(t, e.svc, dep.ID, "late", DeviceSucceeded); d.ResultCode != 700 || d.InstalledUpdateID != installed {
		t.Fatalf("%+v", d)
	}
	// Another startup report does not add it again.
	report(t, late, agentProps("a", "toaster", installed))
	e.settle()
	if got := e.devices(t, dep.ID); !slices.Equal(got, []string{"late", "seed"}) {
		t.Fatalf("devices after a second startup report %v", got)
	}

	// Registered before the Deploy, first report after it.
	if err := e.hub.RegisterDevice("early", key1); err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "early", agentProps("a", "toaster", oldInstalled))
	wantState(t, e.svc, dep.ID, "early", DeviceInProgress)
	if s := desiredService(t, e.hub, "early"); s["workflow"].(map[string]any)["id"] != dep.ID {
		t.Fatalf("early: %v", s)
	}
	// Reported ring b first (not in the group), then ring a.
	e.reportVia(t, "mover", agentProps("b", "toaster", oldInstalled))
	e.wantNotJoined(t, "mover")
	e.reportVia(t, "mover", agentProps("a", "toaster", oldInstalled))
	wantState(t, e.svc, dep.ID, "mover", DeviceInProgress)
	if s := desiredService(t, e.hub, "mover"); s["workflow"].(map[string]any)["id"] != dep.ID {
		t.Fatalf("mover: %v", s)
	}
	if got := e.devices(t, dep.ID); !slices.Equal(got, []string{"early", "late", "mover", "seed"}) {
		t.Fatalf("devices %v", got)
	}
}

// Devices outside the group or the update's compatibility are not added; a
// matching one is.
func TestJoinNotMatching(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	e.reportVia(t, "ringb", agentProps("b", "toaster", oldInstalled))
	e.reportVia(t, "kettle", agentProps("a", "kettle", oldInstalled))
	e.reportVia(t, "noprops", `{"state":0,"installedUpdateId":`+strconvQuote(oldInstalled)+`}`)
	e.reportVia(t, "ok", agentProps("a", "toaster", oldInstalled))
	for _, id := range []string{"ringb", "kettle", "noprops"} {
		e.wantNotJoined(t, id)
	}
	if got := e.devices(t, e.dep.ID); !slices.Equal(got, []string{"ok", "seed"}) {
		t.Fatalf("devices %v", got)
	}
	wantState(t, e.svc, e.dep.ID, "ok", DeviceInProgress)
}

// After Cancel, a device that joins the group is not added, and a device the
// deployment lists is never added again (here: superseded by a deployment
// that was then cancelled, so it follows none).
func TestJoinAfterCancel(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	e.reportVia(t, "before", agentProps("a", "toaster", oldInstalled))
	wantState(t, e.svc, e.dep.ID, "before", DeviceInProgress)
	if err := e.svc.Cancel(e.dep.ID); err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "after", agentProps("a", "toaster", oldInstalled))
	e.wantNotJoined(t, "after")
	e.reportVia(t, "before", agentProps("a", "toaster", oldInstalled))
	wantState(t, e.svc, e.dep.ID, "before", DeviceCancelled)
	if s := desiredService(t, e.hub, "before"); s["workflow"].(map[string]any)["id"] != adu.NoDeployment {
		t.Fatalf("before: %v", s)
	}

	// dB (ring b) lists "b1"; dAll supersedes it there and is cancelled: b1 follows nothing
	// and joins nothing (dAll, the newest deployment it matches, was cancelled).
	e.reportVia(t, "b1", agentProps("b", "toaster", oldInstalled))
	dB, err := e.svc.Deploy(e.u.UpdateID, map[string]string{"ring": "b"})
	if err != nil {
		t.Fatal(err)
	}
	dAll, err := e.svc.Deploy(e.u.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Cancel(dAll.ID); err != nil {
		t.Fatal(err)
	}
	ver := desiredVersion(t, e.hub, "b1")
	e.reportVia(t, "b1", agentProps("b", "toaster", oldInstalled))
	if cur := e.svc.CurrentDeployment("b1"); cur != "" {
		t.Fatalf("b1 follows %s", cur)
	}
	if got := e.devices(t, dB.ID); !slices.Equal(got, []string{"b1"}) {
		t.Fatalf("dB devices %v", got)
	}
	if d := wantState(t, e.svc, dB.ID, "b1", DeviceCancelled); d.SupersededBy != dAll.ID {
		t.Fatalf("%+v", d)
	}
	if desiredVersion(t, e.hub, "b1") != ver {
		t.Fatal("b1 was written to")
	}
	// A new ring b device does not join dB either: dAll, the newest deployment it matches,
	// was cancelled, and an older one does not come back.
	e.reportVia(t, "b2", agentProps("b", "toaster", oldInstalled))
	e.wantNotJoined(t, "b2")
	// A new deployment to ring b is its active one again: b3 joins it.
	dB2, err := e.svc.Deploy(e.u.UpdateID, map[string]string{"ring": "b"})
	if err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "b3", agentProps("b", "toaster", oldInstalled))
	wantState(t, e.svc, dB2.ID, "b3", DeviceInProgress)
}

// A device that already reports the update installed is added as Succeeded
// without a desired write.
func TestJoinAlreadyInstalled(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	installed := e.u.UpdateID.InstalledUpdateID()
	if err := e.hub.RegisterDevice("current", key1); err != nil {
		t.Fatal(err)
	}
	ver := desiredVersion(t, e.hub, "current")
	e.reportVia(t, "current", agentProps("a", "toaster", installed))
	d := wantState(t, e.svc, e.dep.ID, "current", DeviceSucceeded)
	if d.InstalledUpdateID != installed || d.AgentState == nil || *d.AgentState != 0 || d.RetryTimestamp != "" {
		t.Fatalf("%+v", d)
	}
	if desiredVersion(t, e.hub, "current") != ver || desiredService(t, e.hub, "current") != nil {
		t.Fatal("a device already on the update was written to")
	}
	if e.svc.CurrentDeployment("current") != e.dep.ID {
		t.Fatal("current does not follow the deployment")
	}
	st, _ := e.svc.Status(e.dep.ID)
	if st.Counts != (DeviceCounts{InProgress: 1, Succeeded: 1}) {
		t.Fatalf("%+v", st.Counts)
	}
}

// A joined device is kept across a Service (and Hub) restart and still followed.
func TestJoinSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e := startJoinEnv(t, dir)
	e.reportVia(t, "late", agentProps("a", "toaster", oldInstalled))
	before, err := e.svc.Status(e.dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.stop()

	e2 := &joinEnv{svcEnv: startEnv(t, dir), u: e.u, dep: e.dep}
	after, err := e2.svc.Status(e.dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(after.Devices, []string{"late", "seed"}) || !jsonEqual(t, after, before) {
		t.Fatalf("after restart %+v, before %+v", after, before)
	}
	if e2.svc.CurrentDeployment("late") != e.dep.ID {
		t.Fatal("late does not follow the deployment after restart")
	}
	e2.reportVia(t, "late", `{"state":0,"workflow":{"action":3,"id":"`+e.dep.ID+`"},"installedUpdateId":`+
		strconvQuote(e.u.UpdateID.InstalledUpdateID())+`,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`)
	wantState(t, e2.svc, e.dep.ID, "late", DeviceSucceeded)
}

// A device joining a retried deployment gets its latest retryTimestamp; a
// device joins the newest deployment it matches.
func TestJoinRetriedAndNewest(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	dep := e.dep
	e.reportVia(t, "seed", `{"state":6,"workflow":{"action":3,"id":"`+dep.ID+`"}}`)
	e.reportVia(t, "seed", `{"state":255,"workflow":{"action":3,"id":"`+dep.ID+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"30501028"}}`)
	wantState(t, e.svc, dep.ID, "seed", DeviceFailed)
	if _, err := e.svc.Retry(dep.ID); err != nil {
		t.Fatal(err)
	}
	st, _ := e.svc.Status(dep.ID)
	if st.RetryTimestamp == "" {
		t.Fatal("no retryTimestamp")
	}
	e.reportVia(t, "late", agentProps("a", "toaster", oldInstalled))
	if d := wantState(t, e.svc, dep.ID, "late", DeviceInProgress); d.RetryTimestamp != st.RetryTimestamp {
		t.Fatalf("%+v", d)
	}
	if got, want := desiredService(t, e.hub, "late"), desiredService(t, e.hub, "seed"); !reflect.DeepEqual(got, want) ||
		got["workflow"].(map[string]any)["retryTimestamp"] != st.RetryTimestamp {
		t.Fatalf("joined device's service %v, the retry wrote %v", got, want)
	}

	im, files := buildImport(t, "2.0", nil, payload(1024, 7))
	u2, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := e.svc.Deploy(u2.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reportVia(t, "later", agentProps("a", "toaster", oldInstalled))
	wantState(t, e.svc, d2.ID, "later", DeviceInProgress)
	if slices.Contains(e.devices(t, dep.ID), "later") {
		t.Fatal("later joined the older deployment too")
	}
	if s := desiredService(t, e.hub, "later"); s["workflow"].(map[string]any)["id"] != d2.ID {
		t.Fatalf("later: %v", s)
	}
}
