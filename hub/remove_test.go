package hub

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/aduflash/aduflash/iothub"
)

// upDevice connects a raw device subscribed to its twin responses.
func upDevice(t *testing.T, h *Hub, dev, key string) *rawDevice {
	t.Helper()
	d := mustRaw(t, h, goodRaw(h, dev, key))
	d.subscribe(t, iothub.FilterTwinResponses)
	d.expectUp(t, dev)
	return d
}

// newClosableHub is newHub for a hub the test closes itself.
func newClosableHub(t *testing.T, opts Options) *Hub {
	t.Helper()
	opts.HostName = testHost
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// deviceFile is the path of a device's file in a hub's DataDir.
func deviceFile(dir, id string) string { return filepath.Join(dir, "devices", id+".json") }

func wantNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s: %v, want it gone", path, err)
	}
}

// persistentConnect connects a paho client with clean session false (as the
// iothub client does) and returns it with the CONNACK's session-present flag.
func persistentConnect(t *testing.T, h *Hub, dev, key string) (paho.Client, bool, error) {
	t.Helper()
	o := goodRaw(h, dev, key)
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker("tcp://" + h.Addr().String()).
		SetClientID(o.clientID).SetUsername(o.username).SetPassword(o.password).
		SetProtocolVersion(4).SetCleanSession(false).
		SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, false, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, false, err
	}
	return c, tok.(*paho.ConnectToken).SessionPresent(), nil
}

// Removing a connected device drops its connection; it cannot connect again,
// its twin and its file are gone, and a hub restarted on the same DataDir
// does not know it. Unknown ids are ErrUnknownDevice.
func TestRemoveConnectedDevice(t *testing.T) {
	dir := t.TempDir()
	h := newClosableHub(t, Options{DataDir: dir})
	for _, id := range []string{"dev1", "dev2"} {
		if err := h.RegisterDevice(id, key1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	d1 := upDevice(t, h, "dev1", key1)
	d2 := upDevice(t, h, "dev2", key1)
	if _, err := os.Stat(deviceFile(dir, "dev1")); err != nil {
		t.Fatal(err)
	}

	if err := h.RemoveDevice("dev1"); err != nil {
		t.Fatal(err)
	}
	d1.expectLost(t, "removed device")
	if h.Connected("dev1") {
		t.Fatal("dev1 still connected")
	}
	if _, err := connectRaw(t, h, goodRaw(h, "dev1", key1)); err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("CONNECT of the removed device: %v, want not authorized", err)
	}
	if _, err := h.Twin("dev1"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Twin: %v", err)
	}
	if _, err := h.DeviceKey("dev1"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("DeviceKey: %v", err)
	}
	if _, err := h.SetDesired("dev1", json.RawMessage(`{"a":2}`)); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("SetDesired: %v", err)
	}
	if got := h.Devices(); !slices.Equal(got, []string{"dev2"}) {
		t.Fatalf("Devices %v", got)
	}
	wantNoFile(t, deviceFile(dir, "dev1"))
	d2.expectUp(t, "the other device")

	for _, id := range []string{"dev1", "nosuch", ""} {
		if err := h.RemoveDevice(id); !errors.Is(err, ErrUnknownDevice) {
			t.Fatalf("RemoveDevice(%q): %v", id, err)
		}
	}

	// A restart does not bring it back.
	_ = h.Close()
	h2 := newHub(t, Options{DataDir: dir})
	if got := h2.Devices(); !slices.Equal(got, []string{"dev2"}) {
		t.Fatalf("after restart: Devices %v", got)
	}
	if _, err := h2.Twin("dev1"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("after restart: Twin: %v", err)
	}
	if _, err := connectRaw(t, h2, goodRaw(h2, "dev1", key1)); err == nil {
		t.Fatal("after restart: the removed device connected")
	}

	// Registered anew under the same id it is a new device: new key, new twin.
	if err := h2.RegisterDevice("dev1", key2); err != nil {
		t.Fatal(err)
	}
	if _, err := connectRaw(t, h2, goodRaw(h2, "dev1", key1)); err == nil {
		t.Fatal("the old key connected to the new device")
	}
	upDevice(t, h2, "dev1", key2)
	tw, err := h2.Twin("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if des := asMap(t, tw)["desired"].(map[string]any); len(des) != 1 {
		t.Fatalf("the new dev1 has the old twin: %s", tw)
	}
}

// A device removed with a persistent MQTT session (clean session false, as
// the iothub client connects) and registered anew starts with a clean session.
func TestRemoveDropsSession(t *testing.T) {
	h := newHub(t, Options{})
	if err := h.RegisterDevice("sess", key1); err != nil {
		t.Fatal(err)
	}
	c, _, err := persistentConnect(t, h, "sess", key1)
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Subscribe("$iothub/twin/res/#", 0, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	c.Disconnect(100)
	// The broker keeps the session across a reconnect.
	c, present, err := persistentConnect(t, h, "sess", key1)
	if err != nil || !present {
		t.Fatalf("reconnect: present %v, %v", present, err)
	}
	if err := h.RemoveDevice("sess"); err != nil {
		t.Fatal(err)
	}
	c.Disconnect(0)
	if err := h.RegisterDevice("sess", key2); err != nil {
		t.Fatal(err)
	}
	c, present, err = persistentConnect(t, h, "sess", key2)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	if present {
		t.Fatal("the device registered anew resumed the removed device's session")
	}
}

// A write of the device's twin that was snapshotted before the removal and
// lands after it does not bring the file back; nor does one racing with it;
// a registration after the removal is written and stays.
func TestRemoveWinsOverLatePersist(t *testing.T) {
	dir := t.TempDir()
	h := newClosableHub(t, Options{DataDir: dir})
	if err := h.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	late := func() func() error {
		h.mu.Lock()
		d := h.devices["dev1"]
		d.reported = map[string]any{"late": true}
		seq, data, err := h.snapshotLocked("dev1", d)
		h.mu.Unlock()
		return func() error { return h.persist("dev1", d, seq, data, err) }
	}
	write := late()
	if err := h.RemoveDevice("dev1"); err != nil {
		t.Fatal(err)
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	wantNoFile(t, deviceFile(dir, "dev1"))

	// Registered anew: its file is written, and a late write of the old device does not
	// replace it.
	if err := h.RegisterDevice("dev1", key1); err != nil {
		t.Fatal(err)
	}
	write = late()
	if err := h.RemoveDevice("dev1"); err != nil {
		t.Fatal(err)
	}
	if err := h.RegisterDevice("dev1", key2); err != nil {
		t.Fatal(err)
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(deviceFile(dir, "dev1"))
	if err != nil || !strings.Contains(string(b), key2) || strings.Contains(string(b), "late") {
		t.Fatalf("file after a late write: %s, %v", b, err)
	}

	// Writes racing with the removal.
	for i := range 20 {
		if err := h.RegisterDevice("race", key1); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for j := range 4 {
			wg.Go(func() {
				for k := range 5 {
					_, _ = h.SetDesired("race", json.RawMessage(`{"n":`+strconv.Itoa(j)+`,"k":`+strconv.Itoa(k)+`}`))
					_, _ = h.applyReported("race", []byte(`{"n":1}`))
				}
			})
		}
		if err := h.RemoveDevice("race"); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if _, err := os.Stat(deviceFile(dir, "race")); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("round %d: the removed device's file came back: %v", i, err)
		}
	}
	_ = h.Close()
	h2 := newHub(t, Options{DataDir: dir})
	if got := h2.Devices(); !slices.Equal(got, []string{"dev1"}) {
		t.Fatalf("after restart: %v", got)
	}
}

// A deployment that lists a removed device keeps its result, and its other
// devices can still be retried and cancelled, also after a restart and when
// the device was removed while no Service ran.
func TestRemoveDeviceOfDeployment(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, dir)
	im, files := buildImport(t, "1.0", nil, payload(1024, 3))
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	reportAs := func(e *svcEnv, id, agent string) {
		t.Helper()
		if _, err := e.hub.applyReported(id, []byte(`{"deviceUpdate":{"__t":"c","agent":`+agent+`}}`)); err != nil {
			t.Fatal(err)
		}
	}
	devs := []string{"gone", "fail", "busy", "later"}
	for _, id := range devs {
		if err := e.hub.RegisterDevice(id, key1); err != nil {
			t.Fatal(err)
		}
		reportAs(e, id, agentProps("a", "toaster", oldInstalled))
	}
	dep, err := e.svc.Deploy(u.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dep.Devices, []string{"busy", "fail", "gone", "later"}) {
		t.Fatalf("targets %v", dep.Devices)
	}
	failed := `{"state":255,"workflow":{"action":3,"id":"` + dep.ID + `"},"installedUpdateId":` + strconvQuote(oldInstalled) +
		`,"lastInstallResult":{"resultCode":0,"extendedResultCodes":"00000001","resultDetails":"broken"}}`
	reportAs(e, "gone", failed)
	reportAs(e, "fail", failed)
	wantState(t, e.svc, dep.ID, "gone", DeviceFailed)

	if err := e.hub.RemoveDevice("gone"); err != nil {
		t.Fatal(err)
	}
	if cur := e.svc.CurrentDeployment("gone"); cur != "" {
		t.Fatalf("the removed device follows %s", cur)
	}
	retried, err := e.svc.Retry(dep.ID)
	if err != nil || !slices.Equal(retried, []string{"fail"}) {
		t.Fatalf("Retry: %v, %v", retried, err)
	}
	if wf := desiredService(t, e.hub, "fail")["workflow"].(map[string]any); wf["retryTimestamp"] == nil {
		t.Fatalf("fail was not retried: %v", wf)
	}
	if st := wantState(t, e.svc, dep.ID, "gone", DeviceFailed); st.ResultDetails != "broken" {
		t.Fatalf("the removed device's result changed: %+v", st)
	}

	// Restart, and remove another device while no Service runs (aduhub device remove --data).
	e.stop()
	h, err := New(Options{HostName: testHost, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.RemoveDevice("later"); err != nil {
		t.Fatal(err)
	}
	_ = h.Close()
	e = startEnv(t, dir)
	for _, id := range []string{"gone", "later"} {
		if cur := e.svc.CurrentDeployment(id); cur != "" {
			t.Fatalf("after restart the removed %s follows %s", id, cur)
		}
	}
	if cur := e.svc.CurrentDeployment("busy"); cur != dep.ID {
		t.Fatalf("busy follows %q", cur)
	}
	if err := e.svc.Cancel(dep.ID); err != nil {
		t.Fatalf("Cancel: %v", err)
	}
	for _, id := range []string{"busy", "fail"} {
		wantState(t, e.svc, dep.ID, id, DeviceCancelled)
		if wf := desiredService(t, e.hub, id)["workflow"].(map[string]any); wf["id"] != "nodeployment" {
			t.Fatalf("%s not cancelled: %v", id, wf)
		}
	}
	st, err := e.svc.Status(dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Devices, []string{"busy", "fail", "gone", "later"}) || len(st.Results) != 4 {
		t.Fatalf("the deployment lost its removed devices: %+v", st)
	}
	// Both keep their places; the one removed while no Service ran, in progress then, is
	// Cancelled now, the failed one stays Failed.
	if st := wantState(t, e.svc, dep.ID, "gone", DeviceFailed); !st.Removed {
		t.Fatalf("gone: %+v", st)
	}
	if st := wantState(t, e.svc, dep.ID, "later", DeviceCancelled); !st.Removed {
		t.Fatalf("later: %+v", st)
	}

	// A new deployment targets only the registered devices.
	dep2, err := e.svc.Deploy(u.UpdateID, nil)
	if err != nil || !slices.Equal(dep2.Devices, []string{"busy", "fail"}) {
		t.Fatalf("new deployment: %v, %v", dep2, err)
	}
}

// A device removed while its deployment is in progress no longer counts as in progress, and
// registered anew it is a new device: it joins the deployment again.
func TestRemovedDeviceLeavesAndRejoins(t *testing.T) {
	e := startJoinEnv(t, t.TempDir())
	if err := e.hub.RemoveDevice("seed"); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Status(e.dep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts.InProgress != 0 || st.Counts.Cancelled != 1 || !st.Results[0].Removed {
		t.Fatalf("after the removal: %+v", st)
	}
	// The removal is stored: a Service on the same data shows it.
	e.svc.Close()
	svc2, err := NewService(e.hub, e.signer, e.svc.opts)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc2
	if d := wantState(t, e.svc, e.dep.ID, "seed", DeviceCancelled); !d.Removed {
		t.Fatalf("after a Service restart: %+v", d)
	}
	// Registered anew and reporting: it joins again, in progress, with the deployment written.
	e.reportVia(t, "seed", agentProps("a", "toaster", oldInstalled))
	if d := wantState(t, e.svc, e.dep.ID, "seed", DeviceInProgress); d.Removed {
		t.Fatalf("rejoined: %+v", d)
	}
	if s := desiredService(t, e.hub, "seed"); s == nil || s["workflow"].(map[string]any)["id"] != e.dep.ID {
		t.Fatalf("desired service after the rejoin: %v", s)
	}
	if got := e.devices(t, e.dep.ID); !slices.Equal(got, []string{"seed"}) {
		t.Fatalf("devices %v", got)
	}
}
