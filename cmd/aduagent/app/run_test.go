package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/iothub"
)

const testDeviceKey = "c2VjcmV0a2V5MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="

// testHub is the local IoT Hub stand-in with device dev1, over TLS with its local CA as a
// real device meets it.
type testHub struct {
	*hub.Hub
	// conf holds the [agent] keys that reach it: the connection string, hub_address and
	// ca_file.
	conf string
}

func newTestHub(t *testing.T) *testHub {
	t.Helper()
	dir := t.TempDir()
	ca, err := hub.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.New(hub.Options{Address: "127.0.0.1:0", TLSConfig: ca.ServerTLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.RegisterDevice("dev1", testDeviceKey); err != nil {
		t.Fatal(err)
	}
	conf := hubConnection + "hub_address = " + strconv.Quote(h.Addr().String()) + "\n" +
		"ca_file = " + strconv.Quote(filepath.ToSlash(filepath.Join(dir, hub.CACertFile))) + "\n"
	return &testHub{Hub: h, conf: conf}
}

const hubConnection = `connection_string = "HostName=localhost;DeviceId=dev1;SharedAccessKey=` + testDeviceKey + `"` + "\n"

// reportedAgent is the deviceUpdate.agent part of the reported properties.
type reportedAgent struct {
	DeviceProperties    map[string]string `json:"deviceProperties"`
	CompatPropertyNames string            `json:"compatPropertyNames"`
	State               *int              `json:"state"`
	InstalledUpdateID   string            `json:"installedUpdateId"`
}

// waitReported polls dev1's twin until pred holds for the reported agent.
func waitReported(t *testing.T, h *testHub, pred func(*reportedAgent) bool) *reportedAgent {
	t.Helper()
	return waitReportedOf(t, h, "dev1", pred)
}

// waitReportedOf polls the twin of device id (which may not be registered yet) until pred
// holds for the reported agent.
func waitReportedOf(t *testing.T, h *testHub, id string, pred func(*reportedAgent) bool) *reportedAgent {
	t.Helper()
	deadline := time.Now().Add(8 * time.Second)
	var last json.RawMessage
	for time.Now().Before(deadline) {
		twin, err := h.Twin(id)
		if errors.Is(err, hub.ErrUnknownDevice) {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		last = twin
		var doc struct {
			Reported struct {
				DeviceUpdate struct {
					T     string        `json:"__t"`
					Agent reportedAgent `json:"agent"`
				} `json:"deviceUpdate"`
			} `json:"reported"`
		}
		if err := json.Unmarshal(twin, &doc); err != nil {
			t.Fatal(err)
		}
		if a := &doc.Reported.DeviceUpdate.Agent; doc.Reported.DeviceUpdate.T == "c" && pred(a) {
			return a
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the reported properties never matched; twin:\n%s", last)
	return nil
}

// runningAgent is `aduagent run` running in-process.
type runningAgent struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan int
	stderr syncbuf.Buffer
	code   int
	ended  bool
}

// startRun runs `aduagent run` in-process until stop.
func startRun(t *testing.T, fx *agentFixture) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{t: t, cancel: cancel, done: make(chan int, 1)}
	go func() {
		ra.done <- Run(ctx, []string{"aduagent", "--config", fx.cfg, "--cmdline-file", fx.cmdline, "run"}, io.Discard, &ra.stderr)
	}()
	t.Cleanup(func() { ra.stop() })
	return ra
}

// stop cancels the agent's context and returns its exit code and logs.
func (ra *runningAgent) stop() (int, string) {
	if !ra.ended {
		ra.ended = true
		ra.cancel()
		select {
		case ra.code = <-ra.done:
		case <-time.After(5 * time.Second):
			ra.t.Fatal("aduagent run did not stop within 5s of its context ending")
		}
	}
	return ra.code, ra.stderr.String()
}

// waitLog waits until the agent has logged want, then stops it.
func (ra *runningAgent) waitLog(want string) (int, string) {
	ra.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ra.stderr.String(), want) {
		if time.Now().After(deadline) {
			code, logs := ra.stop()
			ra.t.Fatalf("the agent did not log %q within 10s (exit %d):\n%s", want, code, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ra.stop()
}

func TestRunStartupReport(t *testing.T) {
	h := newTestHub(t)
	fx := newAgentFixture(t, h.conf+"log_level = \"debug\"\n")
	ra := startRun(t, fx)
	a := waitReported(t, h, func(a *reportedAgent) bool { return a.DeviceProperties != nil && a.State != nil })
	want := map[string]string{"manufacturer": "contoso", "model": "toaster", "hwrev": "2",
		"contractModelId": adu.ModelContractV3, "aduVer": "aduflash;agent/0.0.0-dev"}
	for k, v := range want {
		if a.DeviceProperties[k] != v {
			t.Errorf("deviceProperties.%s = %q, want %q (%v)", k, a.DeviceProperties[k], v, a.DeviceProperties)
		}
	}
	if a.CompatPropertyNames != "manufacturer,model,hwrev" || *a.State != int(adu.StateIdle) {
		t.Errorf("reported agent: %+v", a)
	}
	if m := h.ModelID("dev1"); m != adu.ModelV3 {
		t.Errorf("model-id %q", m)
	}
	code, logs := ra.stop()
	if code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	for _, want := range []string{"level=INFO msg=\"agent running\" device=dev1", `msg="connected to IoT Hub" address=` + h.Addr().String(),
		"msg=stopped", "time=",
		// The fixture's config (mode 0644) holds the connection string inline.
		`level=WARN msg="the config holds the device key (agent.connection_string) and is readable by others`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// TestRunFinishesLocalInstall: install --no-reboot, "reboot" into B (the kernel command line
// says so, the env still has B pending), then run: Boot runs the health check, confirms B,
// and the startup report names the installed update.
func TestRunFinishesLocalInstall(t *testing.T) {
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true command")
	}
	h := newTestHub(t)
	fx := newAgentFixture(t, h.conf+`[[agent.health_check]]
name = "ok"
command = ["`+truePath+`"]
`)
	// TOML: the [[agent.health_check]] above must come after the plain keys; the fixture
	// appends [agent.properties] after it, which is fine.
	if code, _, errOut := fx.run(t, "install", "--no-reboot", fx.img); code != 0 {
		t.Fatalf("install: exit %d %s", code, errOut)
	}
	mustWrite(t, fx.cmdline, []byte("console=ttyS0 adu.slot=B rootwait\n"))
	if err := os.Chmod(fx.cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", "8:1234")
	ra := startRun(t, fx)
	a := waitReported(t, h, func(a *reportedAgent) bool { return a.State != nil && a.InstalledUpdateID != "" })
	var uid adu.UpdateID
	if err := json.Unmarshal([]byte(a.InstalledUpdateID), &uid); err != nil || uid.Provider != "local" || uid.Name != "rootfs" || uid.Version != "1.2.0" {
		t.Errorf("installedUpdateId %q (%v)", a.InstalledUpdateID, err)
	}
	code, logs := ra.stop()
	if code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	if !strings.Contains(logs, "<6>level=INFO msg=\"health checks passed; bank confirmed\" bank=B") || strings.Contains(logs, "time=") ||
		strings.Contains(logs, "readable by others") {
		t.Errorf("journald logs:\n%s", logs)
	}
	st, err := fx.backend(t).State()
	if err != nil || st.Primary != "B" || st.Pending != "" || st.IsBad("B") {
		t.Errorf("bootloader state after confirm: %+v %v", st, err)
	}
	rec := fx.record(t)
	if rec.Deployment != nil || rec.Last == nil || !rec.Last.Succeeded || rec.Banks["B"] == nil || rec.Banks["B"].Versions["rootfs"] != "1.2.0" {
		t.Errorf("journal after confirm: %+v", rec)
	}
}

func TestRunConfigErrors(t *testing.T) {
	fx := newAgentFixture(t, "")
	// No connection string.
	code, _, errOut := fx.run(t, "run")
	if code != exitcode.Invalid || !strings.Contains(errOut, "agent.connection_string") {
		t.Errorf("no connection string: exit %d %q", code, errOut)
	}
	// A connection string file that is not there.
	fx2 := newAgentFixture(t, `connection_string_file = "`+fx.dir+`/nope"`+"\n")
	code, _, errOut = fx2.run(t, "run")
	if code != exitcode.IO || !strings.Contains(errOut, "agent.connection_string_file") {
		t.Errorf("missing connection string file: exit %d %q", code, errOut)
	}
	// Extra arguments.
	if code, _, _ := fx.run(t, "run", "extra"); code != exitcode.Usage {
		t.Errorf("run extra: exit %d", code)
	}
	// A corrupt journal: the daemon refuses to start (exit 1), nothing written.
	fx3 := newAgentFixture(t, hubConnection+`hub_address = "127.0.0.1:1"`+"\n")
	if code, _, errOut := fx3.run(t, "install", "--no-reboot", fx3.img); code != 0 {
		t.Fatalf("install: %d %s", code, errOut)
	}
	p := fx3.stateDir + "/journal"
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x20
	mustWrite(t, p, b)
	before := fx3.envBytes(t)
	code, _, errOut = fx3.run(t, "run")
	if code != exitcode.Invalid || !strings.Contains(errOut, "journal") || !bytesEqual(before, fx3.envBytes(t)) {
		t.Errorf("corrupt journal: exit %d %q", code, errOut)
	}
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// The SIGTERM of the shutdown the reboot command started cancels the agent's context while
// the command may still run: it must finish, and the reboot is no error.
func TestRebootCommandOutlivesTheStop(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	marker := t.TempDir() + "/rebooted"
	reboot := rebootFunc([]string{"sh", "-c", "sleep 0.3; touch " + marker}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	if err := reboot(ctx); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the reboot command did not finish: %v", err)
	}
}

// The device binary has no way to send its key in clear: no flag for a plain-TCP hub (hidden
// or not), and `run --insecure-hub-address` is a usage error.
func TestRunHasNoPlainTCPOption(t *testing.T) {
	fx := newAgentFixture(t, hubConnection+`hub_address = "127.0.0.1:1"`+"\n")
	// Bounded: were the flag there, the daemon would run (and keep retrying 127.0.0.1:1).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code, _, stderr := runCtx(ctx, "--config", fx.cfg, "--cmdline-file", fx.cmdline, "run", "--insecure-hub-address", "127.0.0.1:1883")
	if errOut := stderr.String(); code != exitcode.Usage || !strings.Contains(errOut, "insecure-hub-address") {
		t.Errorf("run --insecure-hub-address: exit %d %q, want a usage error", code, errOut)
	}
	for _, cmd := range New(io.Discard, io.Discard).Commands {
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				if strings.Contains(n, "insecure") || strings.Contains(n, "plain") || strings.Contains(n, "hub-address") {
					t.Errorf("aduagent %s has a flag --%s", cmd.Name, n)
				}
			}
		}
	}
	if _, out, _ := run(t, "run", "--help"); strings.Contains(out, "insecure") || !strings.Contains(out, "always over TLS") {
		t.Errorf("run --help:\n%s", out)
	}
}

// hub_address at a server that speaks plain TCP: the agent opens with a TLS ClientHello,
// never an MQTT CONNECT (which would carry the SAS token), and the log names the address and
// the TLS failure.
func TestRunSpeaksOnlyTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := make(chan byte, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err == nil {
				select {
				case first <- b[0]:
				default:
				}
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	fx := newAgentFixture(t, hubConnection+"hub_address = "+strconv.Quote(addr)+"\n")
	ra := startRun(t, fx)
	select {
	case b := <-first:
		if b != 0x16 { // a TLS handshake record; an MQTT CONNECT starts with 0x10
			t.Errorf("the agent's first byte is %#x, not a TLS handshake record", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not connect within 10s")
	}
	_, logs := ra.waitLog("cannot connect to IoT Hub; retrying")
	if !strings.Contains(logs, `err="iothub: connect failed: TLS handshake with `+addr+": ") || strings.Contains(logs, "network Error") {
		t.Errorf("logs:\n%s", logs)
	}
}

// A TLS hub whose CA the agent does not trust (no ca_file: the Azure roots): the log names
// the address, the cause and the setting to look at.
func TestRunUntrustedHub(t *testing.T) {
	h := newTestHub(t)
	conf := strings.Join(slices.DeleteFunc(strings.Split(h.conf, "\n"), func(l string) bool { return strings.HasPrefix(l, "ca_file") }), "\n")
	fx := newAgentFixture(t, conf)
	_, logs := startRun(t, fx).waitLog("cannot connect to IoT Hub; retrying")
	want := `err="iothub: connect failed: TLS handshake with ` + h.Addr().String() + `: tls: failed to verify certificate: x509: certificate signed by unknown authority" hint="the server's certificate is not signed by a CA the agent trusts: agent.ca_file`
	if !strings.Contains(logs, want) {
		t.Errorf("logs lack\n%s\n%s", want, logs)
	}
}

// Each file that holds the device's secret gets a warning when others may read it.
func TestWarnSecretsReadable(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix file modes")
	}
	dir := t.TempDir()
	cfgFile, csFile, keyFile := filepath.Join(dir, "aduagent.toml"), filepath.Join(dir, "cs"), filepath.Join(dir, "device.key")
	sas := "HostName=h;DeviceId=d;SharedAccessKey=" + testDeviceKey
	x509 := "HostName=h;DeviceId=d;x509=true"
	for _, tc := range []struct {
		name string
		cfg  agent.Config
		cs   string
		file string
		want string // "": no warning whatever the mode
	}{
		{"inline key", agent.Config{ConnectionString: sas}, sas, cfgFile, "the config holds the device key (agent.connection_string) and is readable by others"},
		{"key file", agent.Config{ConnectionStringFile: csFile}, sas, csFile, "the connection string file is readable by others"},
		{"x509 private key", agent.Config{ConnectionString: x509, X509Key: keyFile}, x509, keyFile, "the device's private key file (agent.x509_key) is readable by others"},
		{"inline x509 string", agent.Config{ConnectionString: x509}, x509, cfgFile, ""},
	} {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o600} {
			mustWrite(t, tc.file, []byte("x"))
			if err := os.Chmod(tc.file, mode); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			dm := &daemon{cfg: tc.cfg, log: slog.New(slog.NewTextHandler(&buf, nil))}
			dm.warnSecretsReadable(cfgFile, iothub.Config{ConnectionString: tc.cs})
			want := tc.want != "" && mode != 0o600
			if got := buf.String(); want != strings.Contains(got, "readable by others") || (want && !strings.Contains(got, tc.want)) {
				t.Errorf("%s, mode %v: warnings %q", tc.name, mode, got)
			}
		}
	}
}
