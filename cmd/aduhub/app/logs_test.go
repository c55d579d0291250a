package app

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// aduhub logs collect: the device gets the request in its desired diagnosticInformation,
// uploads to serve's blob store with the SAS URL, reports its result; the command lists the
// files (kept in the data folder) and exits by the result.
func TestLogsCollect(t *testing.T) {
	s := startServe(t, t.TempDir()+"/hub")
	var added deviceAdded
	s.mustCLI(t, &added, "device", "add", "--json", "dev1")
	c := dialDevice(t, s, added.ConnectionString, added.CAFile)
	iothubtest.NextDesired(t, c) // the twin at connect
	device := func(result int, upload bool) {
		d := iothubtest.NextDesired(t, c)
		req, err := adu.ParseDiagnosticsDesired(d.Patch)
		if err != nil || req.Request == nil {
			t.Errorf("desired %s: %v", d.Patch, err)
			return
		}
		u := strings.Replace(req.Request.StorageSASURL, "?", "/dev1/"+req.Request.OperationID+"/files/var/log/app.log?", 1)
		if !upload {
			u = strings.Replace(u, "sig=", "sig=0", 1)
		}
		put, _ := http.NewRequest(http.MethodPut, u, strings.NewReader("app started\n"))
		put.Header.Set("x-ms-blob-type", "BlockBlob")
		resp, err := http.DefaultClient.Do(put)
		if err != nil {
			t.Error(err)
			return
		}
		resp.Body.Close()
		if want := map[bool]int{true: 201, false: 403}[upload]; resp.StatusCode != want {
			t.Errorf("upload: %s, want %d", resp.Status, want)
		}
		patch, _ := adu.DiagnosticsReport(adu.DiagnosticsResult(result), req.Request.OperationID)
		if _, err := c.UpdateReported(context.Background(), patch); err != nil {
			t.Error(err)
		}
	}

	done := make(chan struct{})
	go func() { defer close(done); device(200, true) }()
	var lc logCollection
	out := s.mustCLI(t, &lc, "logs", "collect", "--json", "dev1")
	<-done
	if lc.ResultCode == nil || *lc.ResultCode != 200 || len(lc.Blobs) != 1 || lc.Blobs[0].Name != "dev1/"+lc.OperationID+"/files/var/log/app.log" {
		t.Fatalf("%s", out)
	}
	if b, err := os.ReadFile(lc.Folder + "/dev1/" + lc.OperationID + "/files/var/log/app.log"); err != nil || string(b) != "app started\n" {
		t.Errorf("stored %q %v", b, err)
	}

	// A failed upload (a wrong token: 403) the device reports as -2: exit 1 with the code.
	done = make(chan struct{})
	go func() { defer close(done); device(int(adu.DiagnosticsUploadFailed), false) }()
	s.wantFail(t, exitcode.Invalid, "resultCode -2", "logs", "collect", "dev1")
	<-done
	s.wantFail(t, exitcode.Invalid, "dev9", "logs", "collect", "dev9")
}
