package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/clitest"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
)

// hubServe is aduhub serve running in-process on 127.0.0.1:0 ports.
type hubServe struct {
	dir      string
	info     serveInfo
	cancel   context.CancelFunc
	done     chan int
	out, err *syncbuf.Buffer
}

func startServe(t *testing.T, dir string, extra ...string) *hubServe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &hubServe{dir: dir, cancel: cancel, done: make(chan int, 1), out: &syncbuf.Buffer{}, err: &syncbuf.Buffer{}}
	args := append([]string{"aduhub", "serve", "--data", dir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warn"}, extra...)
	go func() { s.done <- Run(ctx, args, s.out, s.err) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if info, ok := runningServer(context.Background(), dir); ok {
			s.info = info
			break
		}
		select {
		case code := <-s.done:
			t.Fatalf("serve exited with %d: %s", code, s.err.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("serve did not start")
		}
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

func (s *hubServe) stop(t *testing.T) {
	t.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case code := <-s.done:
		if code != 0 {
			t.Errorf("serve exit %d: %s", code, s.err.String())
		}
	case <-time.After(10 * time.Second):
		t.Error("serve did not stop")
	}
	if _, err := os.Stat(filepath.Join(s.dir, serveInfoFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve.json left behind: %v", err)
	}
}

// cli runs an aduhub command against this server.
func (s *hubServe) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var o, e bytes.Buffer
	n := 1 // the command's words
	if args[0] == "device" || args[0] == "enrollment" || args[0] == "logs" {
		n = 2
	}
	full := append(append(append([]string{"aduhub"}, args[:n]...), "--server", s.info.HTTP, "--token-file", s.tokenFile()), args[n:]...)
	code := Run(context.Background(), full, &o, &e)
	return code, o.String(), e.String()
}

func (s *hubServe) tokenFile() string { return filepath.Join(s.dir, tokenFile) }

// token is the server's API token.
func (s *hubServe) token(t *testing.T) string {
	t.Helper()
	tok, err := readToken(s.tokenFile())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request sends an API request with the server's token (body: JSON).
func (s *hubServe) request(t *testing.T, method, path, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.info.HTTP+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.token(t))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// browser is an HTTP client with a session of the web page (from the login URL).
func (s *hubServe) browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	b := &http.Client{Jar: jar}
	resp, err := b.Get(s.info.HTTP + "/login?token=" + s.token(t))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return b
}

func (s *hubServe) mustCLI(t *testing.T, out any, args ...string) string {
	t.Helper()
	code, o, e := s.cli(t, args...)
	if code != 0 {
		t.Fatalf("aduhub %v: exit %d: %s", args, code, e)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(o), out); err != nil {
			t.Fatalf("aduhub %v: %v\n%s", args, err, o)
		}
	}
	return o
}

func (s *hubServe) wantFail(t *testing.T, wantCode int, wantMsg string, args ...string) {
	t.Helper()
	code, _, e := s.cli(t, args...)
	if code != wantCode || !strings.Contains(e, wantMsg) {
		t.Fatalf("aduhub %v: exit %d, stderr %q; want exit %d and %q", args, code, e, wantCode, wantMsg)
	}
}

// signedUpdate builds a signed image and its import manifest (version v) in dir, with a new
// key.
func signedUpdate(t *testing.T, dir, v string) (manifest, img string) {
	t.Helper()
	k, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return procSignedUpdate(t, dir, v, bytes.Repeat([]byte("aduhub "+v+" "), 4000), k)
}

// deadServer returns the URL of an address nothing listens on, and a token file for it.
func deadServer(t *testing.T) (url, tokenFile string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url = "http://" + ln.Addr().String()
	ln.Close()
	tokenFile = filepath.Join(t.TempDir(), "token")
	mustWriteFile(t, tokenFile, []byte(strings.Repeat("t", minTokenLen)))
	return url, tokenFile
}

func dialDevice(t *testing.T, s *hubServe, conn, caFile string) *iothub.Client {
	t.Helper()
	return iothubtest.Dial(t, deviceConfig(t, s, conn, caFile))
}

func reportAgent(t *testing.T, c *iothub.Client, agent string) {
	t.Helper()
	if _, err := c.UpdateReported(context.Background(), json.RawMessage(`{"deviceUpdate":{"__t":"c","agent":`+agent+`}}`)); err != nil {
		t.Fatal(err)
	}
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	s := startServe(t, filepath.Join(dir, "hub"))
	if !strings.Contains(s.out.String(), s.info.MQTT) || !strings.Contains(s.out.String(), s.info.HTTP) {
		t.Fatalf("serve does not say where it listens:\n%s", s.out.String())
	}
	// A second serve on the same folder is refused.
	if code := Run(context.Background(), []string{"aduhub", "serve", "--data", s.dir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"}, io.Discard, io.Discard); code != exitcode.IO {
		t.Fatalf("second serve: exit %d", code)
	}

	// Devices.
	var added deviceAdded
	s.mustCLI(t, &added, "device", "add", "--json", "dev1")
	if !added.Created || !strings.HasPrefix(added.ConnectionString, "HostName=localhost;DeviceId=dev1;SharedAccessKey=") ||
		added.CAFile != filepath.Join(s.dir, "ca", "ca.pem") || added.MQTT != s.info.DeviceMQTT || !added.TLS {
		t.Fatalf("%+v", added)
	}
	// The key is shown once: adding dev1 again is refused and says how to get a new key.
	s.wantFail(t, exitcode.Invalid, "aduhub device renew-key dev1", "device", "add", "dev1")
	s.wantFail(t, exitcode.Invalid, "invalid device id", "device", "add", "bad/id")
	// --data on a served folder goes through the server.
	var viaData deviceAdded
	code, out, errOut := runHub(t, "device", "add", "--data", s.dir, "--json", "dev2")
	if code != 0 || json.Unmarshal([]byte(out), &viaData) != nil || viaData.MQTT != s.info.DeviceMQTT {
		t.Fatalf("device add --data while serving: %d %s %s", code, out, errOut)
	}

	// Import: a signed image and its manifest; bad manifests and files are refused.
	m1, img1 := signedUpdate(t, dir, "1.0")
	var u hub.Update
	s.mustCLI(t, &u, "import", "--json", "--manifest", m1, img1)
	if u.UpdateID != (adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "1.0"}) || len(u.Files) != 1 || !u.Deployable {
		t.Fatalf("%+v", u)
	}
	s.wantFail(t, exitcode.Invalid, "already imported", "import", "--manifest", m1, img1)
	bad := filepath.Join(dir, "bad.importmanifest.json")
	os.WriteFile(bad, []byte(`{"updateId": {"provider": "Contoso"`), 0o644)
	s.wantFail(t, exitcode.Invalid, "import", "import", "--manifest", bad, img1)
	os.WriteFile(bad, []byte(`{"updateId":{"provider":"Contoso","name":"Toaster","version":"9"},"isDeployable":true,"compatibility":[],"instructions":{"steps":[]},"files":[],"createdDateTime":"2024-01-01T00:00:00Z","manifestVersion":"5.0"}`), 0o644)
	s.wantFail(t, exitcode.Invalid, "invalid import manifest", "import", "--manifest", bad, img1)
	m2, img2 := signedUpdate(t, dir, "2.0")
	s.wantFail(t, exitcode.Invalid, "do not match", "import", "--manifest", m2, img1) // the wrong file
	s.wantFail(t, exitcode.IO, "no such file", "import", "--manifest", m2, filepath.Join(dir, "nope.aduimg"))
	s.wantFail(t, exitcode.Usage, "missing --manifest", "import", img2)
	s.mustCLI(t, nil, "import", "--manifest", m2, img2)

	// A device as the agent would be: TLS with the CA file, the connection string, reported
	// deviceProperties and its installed update.
	c := dialDevice(t, s, added.ConnectionString, added.CAFile)
	if u := iothubtest.NextDesired(t, c); !u.Full {
		t.Fatal("no full twin first")
	}
	old := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "0.9"}.InstalledUpdateID()
	reportAgent(t, c, `{"deviceProperties":{"manufacturer":"contoso","model":"toaster","ring":"a","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2"},"compatPropertyNames":"manufacturer,model","state":0,"installedUpdateId":`+quoteJSON(old)+`}`)

	var devs []deviceInfo
	s.mustCLI(t, &devs, "device", "list", "--json")
	if len(devs) != 2 || devs[0].DeviceID != "dev1" || !devs[0].Connected || devs[0].InstalledUpdate != "Contoso/Toaster/0.9" ||
		devs[0].State == nil || *devs[0].State != 0 || devs[0].DeviceProperties["model"] != "toaster" || devs[1].Connected {
		t.Fatalf("%+v", devs)
	}
	if out := s.mustCLI(t, nil, "device", "list"); !strings.Contains(out, "dev1    yes        contoso/toaster  Idle") {
		t.Fatalf("device list:\n%s", out)
	}

	// Bad deploys.
	s.wantFail(t, exitcode.Invalid, "unknown update", "deploy", "--update", "Contoso/Toaster/7.0")
	s.wantFail(t, exitcode.Invalid, "no registered device matches", "deploy", "--update", "Contoso/Toaster/1.0", "--group", "ring=zzz")
	s.wantFail(t, exitcode.Usage, "provider/name/version", "deploy", "--update", "Contoso-Toaster-1.0")
	s.wantFail(t, exitcode.Usage, "want k=v", "deploy", "--update", "Contoso/Toaster/1.0", "--group", "ring")

	// Deploy 1.0 to ring a: the device gets it in its desired twin, verifiable with the
	// root keys serve wrote, with file URLs that serve the image.
	var dep hub.DeploymentStatus
	s.mustCLI(t, &dep, "deploy", "--json", "--update", "Contoso/Toaster/1.0", "--group", "ring=a")
	if len(dep.Devices) != 1 || dep.Devices[0] != "dev1" || dep.Counts.InProgress != 1 {
		t.Fatalf("%+v", dep)
	}
	des, err := adu.ParseDesired(iothubtest.NextDesired(t, c).Patch)
	if err != nil || des.Service == nil || des.Service.Workflow == nil || des.Service.Workflow.ID != dep.ID {
		t.Fatalf("desired: %+v %v", des, err)
	}
	rk, err := os.ReadFile(s.info.RootKeysFile)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := adu.ParseRootKeys(rk)
	if err != nil {
		t.Fatal(err)
	}
	_, ver, err := adu.VerifyManifest([]byte(des.Service.UpdateManifest), des.Service.UpdateManifestSignature, adu.VerifyOptions{Roots: roots, NoBuiltinRoots: true})
	if err != nil {
		t.Fatal(err)
	}
	// Keys of the size the service uses, which embedded clients rely on.
	if rb, sb := roots[0].Key.N.BitLen(), ver.SigningKey.N.BitLen(); rb != 3072 || sb != 3072 {
		t.Fatalf("root key %d bits, signing key %d bits, want 3072", rb, sb)
	}
	want, _ := os.ReadFile(img1)
	for _, url := range des.Service.FileURLs {
		if !strings.HasPrefix(url, s.info.HTTP+"/files/") {
			t.Fatalf("file URL %s", url)
		}
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Equal(got, want) {
			t.Fatalf("GET %s: %d, %d bytes", url, resp.StatusCode, len(got))
		}
	}

	// The device installs it and reports as the agent does: Succeeded.
	installed := u.UpdateID.InstalledUpdateID()
	reportAgent(t, c, `{"state":6,"workflow":{"action":3,"id":"`+dep.ID+`"}}`)
	reportAgent(t, c, `{"state":0,"workflow":{"action":3,"id":"`+dep.ID+`"},"installedUpdateId":`+quoteJSON(installed)+`,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`)
	var st hub.DeploymentStatus
	s.mustCLI(t, &st, "status", "--json", dep.ID)
	if st.Counts.Succeeded != 1 || len(st.Results) != 1 || st.Results[0].State != hub.DeviceSucceeded || st.Results[0].ResultCode != 700 || st.Results[0].InstalledUpdateID != installed {
		t.Fatalf("%+v", st)
	}
	if out := s.mustCLI(t, nil, "status", dep.ID); !strings.Contains(out, "1 succeeded, 0 failed") ||
		!strings.Contains(out, "dev1") || !strings.Contains(out, "Succeeded") || !strings.Contains(out, "Contoso/Toaster/1.0") {
		t.Fatalf("status:\n%s", out)
	}

	// The web page lists the device, the update and the deployment.
	resp, err := s.browser(t).Get(s.info.HTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{"dev1", "dev2", "Contoso/Toaster/2.0", dep.ID, "Succeeded", `http-equiv="refresh" content="2"`} {
		if !strings.Contains(string(page), w) {
			t.Fatalf("page (%d) lacks %q:\n%s", resp.StatusCode, w, page)
		}
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// 2.0 fails on the device: Failed with its codes; retry sends it again with a
	// retryTimestamp; a second retry has nothing to retry; cancel; cancel again is refused.
	var dep2 hub.DeploymentStatus
	s.mustCLI(t, &dep2, "deploy", "--json", "--update", "Contoso/Toaster/2.0")
	iothubtest.NextDesired(t, c)
	s.wantFail(t, exitcode.Invalid, "no failed devices", "retry", dep2.ID)
	reportAgent(t, c, `{"state":6,"workflow":{"action":3,"id":"`+dep2.ID+`"}}`)
	reportAgent(t, c, `{"state":255,"workflow":{"action":3,"id":"`+dep2.ID+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"30501028","resultDetails":"health check failed"}}`)
	s.mustCLI(t, &st, "status", "--json", dep2.ID)
	if st.Results[0].State != hub.DeviceFailed || st.Results[0].ExtendedResultCodes != "30501028" {
		t.Fatalf("%+v", st)
	}
	out = s.mustCLI(t, nil, "status")
	if !strings.Contains(out, "30501028") || !strings.Contains(out, "health check failed") || strings.Count(out, "deployment ") != 2 {
		t.Fatalf("status:\n%s", out)
	}
	var rr retryResponse
	s.mustCLI(t, &rr, "retry", "--json", dep2.ID)
	if len(rr.Retried) != 1 || rr.Deployment.Counts.InProgress != 1 {
		t.Fatalf("%+v", rr)
	}
	des, err = adu.ParseDesired(iothubtest.NextDesired(t, c).Patch)
	if err != nil || des.Service.Workflow.ID != dep2.ID || des.Service.Workflow.RetryTimestamp == "" {
		t.Fatalf("retry desired: %+v %v", des, err)
	}
	s.wantFail(t, exitcode.Invalid, "no failed devices", "retry", dep2.ID)
	if out := s.mustCLI(t, nil, "cancel", dep2.ID); !strings.Contains(out, "1 cancelled") {
		t.Fatalf("cancel: %s", out)
	}
	des, err = adu.ParseDesired(iothubtest.NextDesired(t, c).Patch)
	if err != nil || !des.Service.IsCancel() {
		t.Fatalf("cancel desired: %+v %v", des, err)
	}
	s.wantFail(t, exitcode.Invalid, "cancelled", "cancel", dep2.ID)
	s.wantFail(t, exitcode.Invalid, "unknown deployment", "cancel", "nope")
	s.wantFail(t, exitcode.Invalid, "unknown deployment", "retry", "nope")
	s.wantFail(t, exitcode.Invalid, "unknown deployment", "status", "nope")
	var all []hub.DeploymentStatus
	s.mustCLI(t, &all, "status", "--json")
	if len(all) != 2 || all[0].ID != dep.ID || !all[1].Cancelled {
		t.Fatalf("%+v", all)
	}

	// The API refuses posts that are not JSON (no cross-site form posts) and foreign Hosts.
	req, _ := http.NewRequest(http.MethodPost, s.info.HTTP+"/api/devices", strings.NewReader(`{"deviceId":"x"}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+s.token(t))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain post: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, s.info.HTTP+"/api/devices", nil)
	req.Header.Set("Authorization", "Bearer "+s.token(t))
	req.Host = "evil.example:8080"
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign Host: %d", resp.StatusCode)
	}

	// Stop; add a device offline; everything is there after a restart.
	c.Close()
	s.stop(t)
	code, out, errOut = runHub(t, "device", "add", "--data", s.dir, "--json", "dev3")
	var offline deviceAdded
	if code != 0 || json.Unmarshal([]byte(out), &offline) != nil || !offline.Created || offline.MQTT != "" || offline.CAFile != added.CAFile {
		t.Fatalf("offline add: %d %s %s", code, out, errOut)
	}
	s2 := startServe(t, s.dir)
	s2.mustCLI(t, &devs, "device", "list", "--json")
	if len(devs) != 3 || devs[2].DeviceID != "dev3" || devs[0].InstalledUpdate != "Contoso/Toaster/1.0" {
		t.Fatalf("after restart: %+v", devs)
	}
	s2.mustCLI(t, &all, "status", "--json")
	if len(all) != 2 || all[0].Counts.Succeeded != 1 {
		t.Fatalf("after restart: %+v", all)
	}
	// The device reconnects with the same connection string and CA.
	c2 := dialDevice(t, s2, added.ConnectionString, added.CAFile)
	if u := iothubtest.NextDesired(t, c2); !u.Full {
		t.Fatal("no full twin")
	}

	// Removed, the device keeps its result in the deployment it followed, marked as removed
	// in the status and on the page.
	c2.Close()
	s2.mustCLI(t, nil, "device", "remove", "dev1")
	if out := s2.mustCLI(t, nil, "status", dep2.ID); !strings.Contains(out, "Cancelled (device removed)") {
		t.Fatalf("status after the removal:\n%s", out)
	}
	resp, err = s2.browser(t).Get(s2.info.HTTP + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), "(device removed)") {
		t.Fatalf("the page does not show the removal:\n%s", page)
	}
}

func TestClientErrors(t *testing.T) {
	// Nothing listens there: I/O error with a hint.
	url, tf := deadServer(t)
	for _, args := range [][]string{
		{"status", "--server", url, "--token-file", tf},
		{"device", "list", "--server", url, "--token-file", tf},
		{"device", "add", "--server", url, "--token-file", tf, "d"},
		{"deploy", "--server", url, "--token-file", tf, "--update", "a/b/c"},
		{"cancel", "--server", url, "--token-file", tf, "x"},
		{"retry", "--server", url, "--token-file", tf, "x"},
	} {
		code, _, e := runHub(t, args...)
		if code != exitcode.IO || !strings.Contains(e, "is `aduhub serve` running?") {
			t.Fatalf("%v: exit %d %q", args, code, e)
		}
	}
	if code, _, e := runHub(t, "status", "--server", "ftp://x"); code != exitcode.Usage {
		t.Fatalf("ftp server: %d %q", code, e)
	}
	if code, _, e := runHub(t, "cancel", "--server", url); code != exitcode.Usage {
		t.Fatalf("cancel without id: %d %q", code, e)
	}
	if code, _, e := runHub(t, "device", "add", "--data", t.TempDir(), "no spaces"); code != exitcode.Invalid || !strings.Contains(e, "invalid device id") {
		t.Fatalf("offline bad id: %d %q", code, e)
	}
}

func TestServePlainTCPAndUsage(t *testing.T) {
	s := startServe(t, t.TempDir(), "--tls=false")
	if s.info.TLS || s.info.CAFile != "" {
		t.Fatalf("%+v", s.info)
	}
	var added deviceAdded
	s.mustCLI(t, &added, "device", "add", "--json", "d1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := iothub.Dial(ctx, iothub.Config{ConnectionString: added.ConnectionString, Address: s.info.MQTT, InsecurePlainTCP: true, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if code, _, e := runHub(t, "serve", "--log-level", "loud"); code != exitcode.Usage {
		t.Fatalf("bad log level: %d %q", code, e)
	}
	if code, _, e := runHub(t, "serve", "--data", t.TempDir(), "--http", s.info.HTTP[len("http://"):], "--mqtt", "127.0.0.1:0"); code != exitcode.IO || !strings.Contains(e, "HTTP listener") {
		t.Fatalf("address in use: %d %q", code, e)
	}
}

// runHubFor is runHub for a command that must end: a serve that starts is stopped after d,
// so that the test fails instead of hanging.
func runHubFor(t *testing.T, d time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return clitest.Run(ctx, Run, "aduhub", args...)
}

// runHub runs aduhub in-process and returns its exit code and output.
func runHub(t *testing.T, args ...string) (int, string, string) {
	return clitest.Run(context.Background(), Run, "aduhub", args...)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
