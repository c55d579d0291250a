package agent

import (
	"context"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/azuritetest"
)

// logFixture is a device on model ;3 with logs to collect, its hub, and the hub's blob store
// served over HTTP.
type logFixture struct {
	h     *testHub
	store *hub.LogStore
	srv   *httptest.Server
	dir   string // the device's log folder
	big   []byte // the content of big.log, longer than max_file_size
	stop  func() error
	a     *Agent
}

const logMaxFile = 1024

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	fx := &logFixture{dir: t.TempDir(), big: payload(9, 3000)}
	store, err := hub.NewLogStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	fx.store = store
	fx.srv = httptest.NewServer(store)
	t.Cleanup(fx.srv.Close)
	for name, data := range map[string][]byte{"agent.log": []byte("agent started\n"), "big.log": fx.big} {
		if err := os.WriteFile(filepath.Join(fx.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fx.h = newHub(t)
	fx.h.model = adu.ModelV3
	fx.h.connect()
	d := newDevice(t, payload(1, 64<<10))
	a := d.agent(func(o *Options) {
		o.ModelID = adu.ModelV3
		o.DeviceName = deviceID
		o.DeviceInformation = func() DeviceInformation { return DeviceInformation{} }
		o.Diagnostics = Diagnostics{Files: []string{fx.dir, filepath.Join(fx.dir, "missing.log")}, MaxFileSize: logMaxFile,
			Commands: map[string][]string{"journal": {"sh", "-c", "echo journal line"}}}
	})
	fx.a = a
	fx.stop, _ = runBackground(a, fx.h)
	t.Cleanup(func() { fx.stop() })
	waitFor(t, "startup", func() bool { return fx.h.agentReported() != nil })
	return fx
}

// collect starts a log collection and waits for the device's result code for it.
func (fx *logFixture) collect(t *testing.T, opID, sasURL string) int {
	t.Helper()
	if _, err := fx.h.h.StartLogCollection(deviceID, opID, sasURL); err != nil {
		t.Fatal(err)
	}
	var res hub.LogCollectionResult
	waitFor(t, "result of "+opID, func() bool {
		var err error
		res, err = fx.h.h.LogCollection(deviceID)
		return err == nil && res.ResultCode != nil && res.OperationID == opID
	})
	return *res.ResultCode
}

func (fx *logFixture) sas(t *testing.T) string {
	t.Helper()
	u, err := fx.store.SASURL(fx.srv.URL, "logs")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// stored returns the blobs of the hub's store under prefix, by name, with their bytes.
func (fx *logFixture) stored(t *testing.T, prefix string) map[string][]byte {
	t.Helper()
	blobs, err := fx.store.Blobs("logs", prefix)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, b := range blobs {
		if out[b.Name], err = fx.store.ReadBlob("logs", b.Name); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// checkUploaded checks that blobs (by name, with their bytes) are the fixture's logs as
// operation opID uploads them: under <device>/<opID>/, the directory's files (big.log cut to
// its newest max_file_size bytes behind a note) and the command's output.
func (fx *logFixture) checkUploaded(t *testing.T, opID string, blobs map[string][]byte) {
	t.Helper()
	dir := deviceID + "/" + opID + "/files/" + strings.TrimPrefix(filepath.ToSlash(fx.dir), "/")
	note := "[aduagent: the first 1976 bytes are left out (agent.diagnostics.max_file_size)]\n"
	want := map[string]string{
		deviceID + "/" + opID + "/commands/journal.txt": "journal line\n",
		dir + "/agent.log": "agent started\n",
		dir + "/big.log":   note + string(fx.big[len(fx.big)-logMaxFile:]),
	}
	for name, w := range want {
		if got, ok := blobs[name]; !ok || string(got) != w {
			t.Errorf("blob %s: %t, %d bytes starting %.90q; want %d bytes starting %.90q", name, ok, len(got), got, len(w), w)
		}
	}
	if len(blobs) != len(want) {
		t.Errorf("%d blobs %q, want %d", len(blobs), slices.Sorted(maps.Keys(blobs)), len(want))
	}
}

// A log collection end to end through the hub: the request is acknowledged, the configured
// files (a directory's, a missing one left out) and the command's output are uploaded under
// <device>/<operationId>/, a log longer than max_file_size is cut to its newest bytes behind a
// note, the result is 200, and the same request again uploads nothing.
func TestLogCollection(t *testing.T) {
	fx := newLogFixture(t)
	if code := fx.collect(t, "op-1", fx.sas(t)); code != int(adu.DiagnosticsSuccess) {
		t.Fatalf("result %d", code)
	}
	fx.checkUploaded(t, "op-1", fx.stored(t, deviceID+"/op-1/"))
	if !strings.Contains(strings.Join(fx.h.all(), "\n"), `{"diagnosticInformation":{"__t":"c","service":{"ac":200,`) {
		t.Error("the request was not acknowledged")
	}

	// The same operation delivered again (a reconnect, a restart): no collection starts.
	var st diagnosticsState
	fx.a.onDiagnostics(context.Background(), []byte(`{"diagnosticInformation":{"service":{"operationId":"op-1","storageSasUrl":"`+fx.sas(t)+`"}},"$version":99}`), &st)
	if st.job != nil {
		t.Error("op-1 collected again")
	}
}

// The same collection into Azurite, Blob Storage's emulator, with a container SAS as the
// service gives one (create and write): the blobs land there with the logs' names and bytes,
// and the device reports success.
func TestLogCollectionIntoAzurite(t *testing.T) {
	az := azuritetest.Start(t)
	c := az.Container(t, "logs")
	fx := newLogFixture(t)
	if code := fx.collect(t, "op-az", azuritetest.SAS(t, c, sas.ContainerPermissions{Create: true, Write: true})); code != int(adu.DiagnosticsSuccess) {
		t.Fatalf("result %d", code)
	}
	fx.checkUploaded(t, "op-az", azuritetest.Blobs(t, c, deviceID+"/op-az/"))
}

// Uploads that fail are reported with the Linux agent's codes, and a hostile request is
// refused before any log is sent: nothing reaches the store.
func TestLogCollectionRefused(t *testing.T) {
	fx := newLogFixture(t)
	good := fx.sas(t)
	for _, tc := range []struct {
		name, op, url string
		want          adu.DiagnosticsResult
	}{
		{"wrong token (403)", "op-403", strings.Replace(good, "sig=", "sig=0", 1), adu.DiagnosticsUploadFailed},
		{"unreachable", "op-down", "http://127.0.0.1:1/logs?sig=x", adu.DiagnosticsUploadFailed},
		{"plain http to another host", "op-http", "http://logs.example.com/logs?sig=x", adu.DiagnosticsBadCredential},
		{"no container", "op-noc", fx.srv.URL + "/?sig=x", adu.DiagnosticsBadCredential},
		{"no token", "op-notoken", fx.srv.URL + "/logs", adu.DiagnosticsBadCredential},
		{"no SAS URL", "op-nosas", "", adu.DiagnosticsNoSASCredential},
		{"operation id with a path", "../../etc", good, adu.DiagnosticsNoOperationID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code := fx.collect(t, tc.op, tc.url); code != int(tc.want) {
				t.Errorf("result %d, want %d", code, tc.want)
			}
		})
	}
	if blobs, _ := fx.store.Blobs("logs", ""); len(blobs) != 0 {
		t.Errorf("blobs stored: %v", blobs)
	}
}
