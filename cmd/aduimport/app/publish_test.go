package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hubapp "github.com/aduflash/aduflash/cmd/aduhub/app"
	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/internal/azuritetest"
	"github.com/aduflash/aduflash/internal/publishtest"
	"github.com/aduflash/aduflash/publish"
)

// localHub is aduhub serve running in-process, fetching import files from one blob host.
type localHub struct {
	url, tokenFile string
}

func startHub(t *testing.T, blobHost string) *localHub {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var errOut bytes.Buffer
	go func() {
		done <- hubapp.Run(ctx, []string{"aduhub", "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0",
			"--log-level", "error", "--blob-host", blobHost}, io.Discard, &errOut)
	}()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var info struct {
			HTTP string `json:"http"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, "serve.json")); err == nil && json.Unmarshal(b, &info) == nil {
			return &localHub{url: info.HTTP, tokenFile: filepath.Join(dir, "api-token")}
		}
		select {
		case code := <-done:
			done <- code
			t.Fatalf("aduhub serve exited %d: %s", code, errOut.String())
		default:
		}
	}
	t.Fatal("aduhub serve did not start")
	return nil
}

// get GETs path of the hub with its token and decodes the JSON answer into v.
func (h *localHub) get(t *testing.T, path string, v any) int {
	t.Helper()
	tok, _ := os.ReadFile(h.tokenFile)
	req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		_ = json.NewDecoder(resp.Body).Decode(v)
	}
	return resp.StatusCode
}

// publishArgs are the arguments of aduimport publish of w through the container
// "updates" of $AZURE_STORAGE_CONNECTION_STRING into the hub.
func (h *localHub) publishArgs(w publishtest.Update, extra ...string) []string {
	args := []string{"publish", "--manifest", w.Manifest, "--endpoint", h.url, "--instance", "aduhub", "--token-file", h.tokenFile,
		"--container", "updates", "--poll", "20ms", "--block-size", "1048576"}
	return append(append(args, extra...), w.Files...)
}

// The whole CI step against real peers: an update published through Azurite into aduhub
// (its files fetched from Azurite by the SAS URLs) is imported with the files' bytes;
// publishing it again exits 4 without uploading anything.
func TestPublishThroughAzuriteIntoAduhub(t *testing.T) {
	az := azuritetest.Start(t)
	t.Setenv(connStringEnv, azuritetest.ConnectionString(az.AccountURL))
	h := startHub(t, az.Host)
	w := publishtest.Write(t, t.TempDir(), "1.0",
		publishtest.Payload{Name: "rootfs.bin", Size: 5<<20 + 7, Seed: 1}, publishtest.Payload{Name: "app.bin", Size: 1000, Seed: 2})

	code, out, errOut := run(t, h.publishArgs(w, "--wait", "--friendly-name", "Toaster 1.0")...)
	if code != 0 || !strings.Contains(out, "Contoso.Toaster.1.0 imported") || !strings.Contains(errOut, "Succeeded") {
		t.Fatalf("publish: exit %d\n%s\n%s", code, out, errOut)
	}
	checkImported(t, h, w)

	code, out, errOut = run(t, h.publishArgs(w, "--json")...)
	var rep publishReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if code != exitcode.Exists || rep.ExitCode != exitcode.Exists || !strings.Contains(rep.Error, "exists already") || len(rep.Files) != 0 {
		t.Fatalf("publish again: exit %d, %+v\n%s", code, rep, errOut)
	}
}

// checkImported checks that the hub has w's update, with each file's bytes.
func checkImported(t *testing.T, h *localHub, w publishtest.Update) {
	t.Helper()
	if st := h.get(t, "/deviceUpdate/aduhub/updates/providers/Contoso/names/Toaster/versions/"+w.ID.Version+"?api-version="+publish.DefaultAPIVersion, nil); st != http.StatusOK {
		t.Fatalf("GET of the update: %d", st)
	}
	var updates []struct {
		Files []struct {
			ID       string `json:"id"`
			FileName string `json:"fileName"`
		} `json:"files"`
	}
	h.get(t, "/api/updates", &updates)
	if len(updates) != 1 || len(updates[0].Files) != len(w.Files) {
		t.Fatalf("the hub's updates: %+v", updates)
	}
	for i, f := range updates[0].Files {
		resp, err := http.Get(h.url + "/files/" + f.ID + "/" + f.FileName)
		if err != nil {
			t.Fatal(err)
		}
		got, n := sha256Of(t, resp.Body)
		resp.Body.Close()
		want, wantN := sha256Of(t, openFile(t, w.Files[i]))
		if f.FileName != filepath.Base(w.Files[i]) || got != want || n != wantN {
			t.Errorf("file %s: %d bytes, SHA-256 %x; want %s's %d bytes, %x", f.FileName, n, got, w.Files[i], wantN, want)
		}
	}
}

// The CI step at full size: a 1 GiB update published through Azurite into aduhub is
// cut once (the run's context cancelled after 40 of its 128 blocks reached Azurite) and
// published again: the second run sends only the blocks Azurite had not staged, and the
// update is imported with the file's bytes.
func TestPublish1GiBCutAndResumedThroughAzuriteIntoAduhub(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: publishes 1 GiB")
	}
	const size, blockSize, cutAfter = 1 << 30, 8 << 20, 40
	az := azuritetest.Start(t)
	ctx, cut := context.WithCancel(context.Background())
	proxy := az.Proxy(t, cutAfter, cut)
	t.Setenv(connStringEnv, azuritetest.ConnectionString(proxy.AccountURL))
	h := startHub(t, proxy.Host)
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Size: size, Seed: 3})
	args := h.publishArgs(w, "--wait", "--json", "--block-size", strconv.Itoa(blockSize))

	if code, out, _ := clitest.Run(ctx, Run, "aduimport", args...); code != exitcode.IO {
		t.Fatalf("the cut run: exit %d, want %d\n%s", code, exitcode.IO, out)
	}
	staged := proxy.BlockBytes()
	if staged < cutAfter*blockSize || staged >= size {
		t.Fatalf("the cut run staged %d bytes, want from %d to below %d", staged, cutAfter*blockSize, size)
	}

	code, out, errOut := run(t, args...)
	var rep publishReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || len(rep.Files) != 1 {
		t.Fatalf("the resumed run: exit %d, %v\n%s\n%s", code, err, out, errOut)
	}
	// A block in flight when the run was cut may have been staged without the proxy seeing
	// its answer: the second run may find more than staged, never less.
	file, sent := rep.Files[0], proxy.BlockBytes()-staged
	if file.Resumed < staged || file.Sent+file.Resumed != size || sent != file.Sent+rep.Manifest.Sent {
		t.Fatalf("the resumed run: %+v, %d block bytes reached Azurite; want at most %d sent (nothing the cut run staged) and the rest resumed",
			file, sent, size-staged)
	}
	checkImported(t, h, w)
}

// sha256Of reads r to its end and returns the SHA-256 and length of its bytes.
func sha256Of(t *testing.T, r io.Reader) ([sha256.Size]byte, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return [sha256.Size]byte(h.Sum(nil)), n
}

func openFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fakeADU is a Device Update API that records its requests and answers as told.
type fakeADU struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []string
	// operations are the successive answers to GET of the operation.
	operations []publish.Operation
	location   string // the Operation-Location to answer (default: its own operation)
}

func newFakeADU(t *testing.T) *fakeADU {
	f := &fakeADU{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		switch {
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/versions/"):
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(publish.ErrorResponse{Error: publish.ServiceError{Code: "UpdateNotFound", Message: "no"}})
		case r.Method == http.MethodPost:
			loc := f.location
			if loc == "" {
				loc = "/deviceUpdate/i/updates/operations/op1?api-version=" + publish.DefaultAPIVersion
			}
			w.Header().Set("Operation-Location", loc)
			w.WriteHeader(http.StatusAccepted)
		case strings.Contains(r.URL.Path, "/operations/") && len(f.operations) > 0:
			op := f.operations[0]
			if len(f.operations) > 1 {
				f.operations = f.operations[1:]
			}
			_ = json.NewEncoder(w).Encode(op)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeADU) calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// A file whose bytes are not the manifest's is refused before anything is sent: no request
// reaches the Device Update API or the blob store, and the exit code is 1.
func TestPublishRefusesAFileThatDoesNotMatchBeforeAnyRequest(t *testing.T) {
	api := newFakeADU(t)
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Data: []byte("the signed image")})
	if err := os.WriteFile(w.Files[0], []byte("the tampered one"), 0o644); err != nil { // same size
		t.Fatal(err)
	}
	code, _, errOut := run(t, "publish", "--manifest", w.Manifest, "--endpoint", api.srv.URL, "--instance", "i", "--token-file", tokenFile(t),
		"--blob-url", api.srv.URL+"/c?sv=x&sig=y", w.Files[0])
	if code != exitcode.Invalid || !strings.Contains(errOut, "SHA-256") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if calls := api.calls(); len(calls) != 0 {
		t.Fatalf("requests sent for a file that does not match: %q", calls)
	}
}

func tokenFile(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte("a-token-for-tests\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A Failed import shows the service's error with its details and inner errors, exit 1;
// --json carries the operation.
func TestPublishShowsAFailedOperationsDetails(t *testing.T) {
	az := azuritetest.Start(t)
	t.Setenv(connStringEnv, azuritetest.ConnectionString(az.AccountURL))
	api := newFakeADU(t)
	failed := publish.Operation{OperationID: "op1", Status: publish.StatusFailed, TraceID: "trace-7", Error: &publish.ServiceError{
		Code: "CannotProcessImportManifest", Message: "Error processing import manifest.",
		Details:    []publish.ServiceError{{Code: "ContentFileCannotDownload", Message: "Cannot download source file.", Target: "rootfs.bin"}},
		InnerError: &publish.InnerError{Code: "CannotDownload", ErrorDetail: "Response status code does not indicate success: 403"},
	}}
	api.operations = []publish.Operation{{OperationID: "op1", Status: publish.StatusRunning}, failed}
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Data: []byte("image")})
	args := []string{"publish", "--manifest", w.Manifest, "--endpoint", api.srv.URL, "--instance", "i", "--token-file", tokenFile(t),
		"--container", "updates", "--poll", "10ms", "--wait"}
	code, _, errOut := run(t, append(args, w.Files...)...)
	for _, want := range []string{"Running", "CannotProcessImportManifest: Error processing import manifest.", "inner CannotDownload",
		"Response status code does not indicate success: 403", "detail ContentFileCannotDownload", "target rootfs.bin", "trace id trace-7"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if code != exitcode.Invalid {
		t.Errorf("exit %d, want %d", code, exitcode.Invalid)
	}
	api.operations = []publish.Operation{{OperationID: "op1", Status: publish.StatusFailed,
		Error: &publish.ServiceError{Code: "ImportFailed", Message: "no", InnerError: &publish.InnerError{Code: "UpdateAlreadyExists"}}}}
	if code, _, errOut := run(t, append(args, w.Files...)...); code != exitcode.Exists {
		t.Errorf("an operation that failed with UpdateAlreadyExists: exit %d, want %d: %s", code, exitcode.Exists, errOut)
	}
	api.operations = []publish.Operation{failed}
	code, out, _ := run(t, append(append(args, "--json"), w.Files...)...)
	var rep publishReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != exitcode.Invalid || rep.Operation == nil ||
		rep.Operation.Error == nil || len(rep.Operation.Error.Details) != 1 || rep.Manifest.Blob != "Contoso/Toaster/1.0/"+filepath.Base(w.Manifest) {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
}

// An Operation-Location on another host is not followed: the bearer token stays with the
// endpoint.
func TestPublishRefusesAnOperationOnAnotherHost(t *testing.T) {
	az := azuritetest.Start(t)
	t.Setenv(connStringEnv, azuritetest.ConnectionString(az.AccountURL))
	api, elsewhere := newFakeADU(t), newFakeADU(t)
	api.location = elsewhere.srv.URL + "/deviceUpdate/i/updates/operations/op1"
	w := publishtest.Write(t, t.TempDir(), "1.0", publishtest.Payload{Name: "rootfs.bin", Data: []byte("image")})
	code, _, errOut := run(t, "publish", "--manifest", w.Manifest, "--endpoint", api.srv.URL, "--instance", "i", "--token-file", tokenFile(t),
		"--container", "updates", "--wait", w.Files[0])
	if code != exitcode.IO || !strings.Contains(errOut, "is not on") || len(elsewhere.calls()) != 0 {
		t.Fatalf("exit %d, %d requests elsewhere: %s", code, len(elsewhere.calls()), errOut)
	}
}

func TestPublishUsageErrors(t *testing.T) {
	t.Setenv(connStringEnv, "")
	base := []string{"publish", "--manifest", "m.importmanifest.json", "--endpoint", "https://a.api.adu.microsoft.com", "--instance", "i"}
	for _, extra := range [][]string{
		{"f.bin"},                     // no container
		{"--container", "c", "f.bin"}, // which account?
		{"--container", "c", "--blob-url", "https://x/c", "f.bin"}, // both
		{"--storage-account", "a", "--container", "c"},             // no file
		{"--blob-url", "https://x/c", "--block-size", "10", "f.bin"},
		{"--blob-url", "https://x/c", "--parallel", "0", "f.bin"},
		{"--blob-url", "https://x/c", "--friendly-name", "", "f.bin"},
	} {
		if code, _, errOut := run(t, append(base, extra...)...); code != exitcode.Usage {
			t.Errorf("publish %q: exit %d, want %d: %s", extra, code, exitcode.Usage, errOut)
		}
	}
	// An http endpoint beyond this machine is refused before the files are read.
	code, _, errOut := run(t, "publish", "--manifest", "m.importmanifest.json", "--endpoint", "http://a.example", "--instance", "i", "--blob-url", "https://x/c", "f.bin")
	if code != exitcode.Usage || !strings.Contains(errOut, "https only") {
		t.Errorf("http endpoint: exit %d: %s", code, errOut)
	}
}
