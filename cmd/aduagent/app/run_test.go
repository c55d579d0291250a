package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
)

const testDeviceKey = "c2VjcmV0a2V5MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="

// newTestHub starts the local IoT Hub stand-in with device dev1.
func newTestHub(t *testing.T) *hub.Hub {
	t.Helper()
	h, err := hub.New(hub.Options{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.RegisterDevice("dev1", testDeviceKey); err != nil {
		t.Fatal(err)
	}
	return h
}

const hubConnection = `connection_string = "HostName=localhost;DeviceId=dev1;SharedAccessKey=` + testDeviceKey + `"` + "\n"

// reportedAgent is the deviceUpdate.agent part of the reported properties.
type reportedAgent struct {
	DeviceProperties    map[string]string `json:"deviceProperties"`
	CompatPropertyNames string            `json:"compatPropertyNames"`
	State               *int              `json:"state"`
	InstalledUpdateID   string            `json:"installedUpdateId"`
}

// waitReported polls the twin until pred holds for the reported agent.
func waitReported(t *testing.T, h *hub.Hub, pred func(*reportedAgent) bool) *reportedAgent {
	t.Helper()
	deadline := time.Now().Add(4 * time.Second)
	var last json.RawMessage
	for time.Now().Before(deadline) {
		twin, err := h.Twin("dev1")
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

// startRun runs `aduagent run` in-process; stop cancels it and returns the exit code.
func startRun(t *testing.T, fx *agentFixture, h *hub.Hub) (stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		code   int
		stderr *syncBuffer
	}
	done := make(chan result, 1)
	go func() {
		code, _, e := runCtx(ctx, "--config", fx.cfg, "--cmdline-file", fx.cmdline, "run", "--insecure-hub-address", h.Addr().String())
		done <- result{code, e}
	}()
	stopped := false
	var res result
	stop = func() (int, string) {
		if !stopped {
			stopped = true
			cancel()
			select {
			case res = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("aduagent run did not stop within 5s of its context ending")
			}
		}
		return res.code, res.stderr.String()
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestRunStartupReport(t *testing.T) {
	h := newTestHub(t)
	fx := newAgentFixture(t, hubConnection+"log_level = \"debug\"\n")
	stop := startRun(t, fx, h)
	a := waitReported(t, h, func(a *reportedAgent) bool { return a.DeviceProperties != nil && a.State != nil })
	want := map[string]string{"manufacturer": "contoso", "model": "toaster", "hwrev": "2",
		"contractModelId": adu.ModelContractV3, "aduVer": "DU;agent/1.1.0"}
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
	code, logs := stop()
	if code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	for _, want := range []string{"level=INFO msg=\"agent running\" device=dev1", "connected to IoT Hub", "msg=stopped", "time="} {
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
	fx := newAgentFixture(t, hubConnection+`[[agent.health_check]]
name = "ok"
command = ["`+truePath+`"]
`)
	// TOML: the [[agent.health_check]] above must come after the plain keys; the fixture
	// appends [agent.properties] after it, which is fine.
	if code, _, errOut := fx.run(t, "install", "--no-reboot", fx.img); code != 0 {
		t.Fatalf("install: exit %d %s", code, errOut)
	}
	mustWrite(t, fx.cmdline, []byte("console=ttyS0 adu.slot=B rootwait\n"))
	t.Setenv("JOURNAL_STREAM", "8:1234")
	stop := startRun(t, fx, h)
	a := waitReported(t, h, func(a *reportedAgent) bool { return a.State != nil && a.InstalledUpdateID != "" })
	var uid adu.UpdateID
	if err := json.Unmarshal([]byte(a.InstalledUpdateID), &uid); err != nil || uid.Provider != "local" || uid.Name != "rootfs" || uid.Version != "1.2.0" {
		t.Errorf("installedUpdateId %q (%v)", a.InstalledUpdateID, err)
	}
	code, logs := stop()
	if code != 0 {
		t.Errorf("exit %d\n%s", code, logs)
	}
	if !strings.Contains(logs, "<6>level=INFO msg=\"health checks passed; bank confirmed\" bank=B") || strings.Contains(logs, "time=") {
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
	fx3 := newAgentFixture(t, hubConnection)
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
	code, _, errOut = fx3.run(t, "run", "--insecure-hub-address", "127.0.0.1:1")
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
