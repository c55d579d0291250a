package app

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/syncbuf"
	"github.com/aduflash/aduflash/manifestgen"
)

// procRig is the separate-process setup: built aduhub and aduagent binaries, a running
// `aduhub serve`, and one device on files whose agent runs as a process.
type procRig struct {
	t        *testing.T
	bin      string // the built binaries
	hubDir   string
	hubCmd   *exec.Cmd
	hubDone  chan error
	hubErr   *syncbuf.Buffer
	info     serveInfo
	dev      string // the device's folder
	cfg      string // its aduagent.toml
	cmdline  string
	fwEnv    string // fw_env.config
	marker   string // reboot-requested
	agentCmd *exec.Cmd
	agentEnd chan error
	agentErr *syncbuf.Buffer // every run of the agent, one after another
	boots    int

	root, slotA, slotB string
	unhealthy          string // the health check fails while this file exists
	key                crypto.Signer
	hubArgs            []string
	start              time.Time
}

// buildProcBinaries builds aduhub and aduagent into dir.
func buildProcBinaries(t *testing.T, dir string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the binaries with")
	}
	cmd := exec.Command(goTool, "build", "-o", dir+string(filepath.Separator),
		"github.com/aduflash/aduflash/cmd/aduhub", "github.com/aduflash/aduflash/cmd/aduagent")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

// startProcHub runs `aduhub serve` (MQTT over TLS with its local CA) on 127.0.0.1:0 ports
// and reads serve.json.
func (r *procRig) startProcHub() {
	t := r.t
	t.Helper()
	r.hubErr = &syncbuf.Buffer{}
	args := append([]string{"serve", "--data", r.hubDir, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "info"}, r.hubArgs...)
	r.hubCmd = exec.Command(filepath.Join(r.bin, "aduhub"), args...)
	r.hubCmd.Stderr = r.hubErr
	r.hubCmd.Stdout = r.hubErr
	if err := r.hubCmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.hubDone = make(chan error, 1)
	go func() { r.hubDone <- r.hubCmd.Wait() }()
	t.Cleanup(func() { stopProc(t, "aduhub serve", r.hubCmd, r.hubDone) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(r.hubDir, serveInfoFile))
		if err == nil && json.Unmarshal(b, &r.info) == nil && r.info.HTTP != "" && r.info.MQTT != "" {
			return
		}
		select {
		case err := <-r.hubDone:
			r.hubDone <- err
			t.Fatalf("aduhub serve exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("aduhub serve wrote no serve.json within 10s")
		}
	}
}

// stopProc sends SIGTERM, waits up to 5 s, then kills.
func stopProc(t *testing.T, what string, cmd *exec.Cmd, done chan error) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	select {
	case err := <-done:
		done <- err // already ended
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		done <- err
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		err := <-done
		done <- err
		t.Errorf("%s did not stop within 5s of SIGTERM; killed", what)
	}
}

// hubCLI runs the built aduhub against the server; out (if not nil) gets its JSON.
func (r *procRig) hubCLI(out any, args ...string) string {
	t := r.t
	t.Helper()
	n := 1
	if args[0] == "device" {
		n = 2
	}
	full := append(append(append([]string{}, args[:n]...), "--server", r.info.HTTP, "--token-file", filepath.Join(r.hubDir, tokenFile)), args[n:]...)
	cmd := exec.Command(filepath.Join(r.bin, "aduhub"), full...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("aduhub %s: %v\n%s", strings.Join(full, " "), err, e.String())
	}
	if out != nil {
		if err := json.Unmarshal(o.Bytes(), out); err != nil {
			t.Fatalf("aduhub %s: %v\n%s", strings.Join(full, " "), err, o.String())
		}
	}
	return o.String()
}

// startProcAgent runs `aduagent run` as a process; it reaches the hub as a device does, over
// TLS (agent.ca_file, agent.hub_address).
func (r *procRig) startProcAgent() {
	t := r.t
	t.Helper()
	r.boots++
	fmt.Fprintf(r.agentErr, "----- aduagent run #%d -----\n", r.boots)
	r.agentCmd = exec.Command(filepath.Join(r.bin, "aduagent"), "--config", r.cfg, "--cmdline-file", r.cmdline, "run")
	r.agentCmd.Stdout, r.agentCmd.Stderr = r.agentErr, r.agentErr
	if err := r.agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := r.agentCmd, make(chan error, 1)
	r.agentEnd = done
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { stopProc(t, "aduagent run", cmd, done) })
}

// procReboot waits for the agent's reboot command, stops the agent as a shutdown would,
// lets the simulated U-Boot pick a bank, and starts the agent again in it.
func (r *procRig) procReboot(within time.Duration) sim.Boot {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := os.Stat(r.marker); err == nil {
			break
		}
		select {
		case err := <-r.agentEnd:
			r.agentEnd <- err
			t.Fatalf("aduagent run exited (%v) instead of asking for a reboot", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not ask for a reboot within %v", within)
		}
	}
	r.agentCmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.agentEnd:
		r.agentEnd <- err
		if err != nil {
			t.Fatalf("aduagent run, stopped for the reboot: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("aduagent run did not stop within 5s of SIGTERM while waiting for the reboot")
	}
	if err := os.Remove(r.marker); err != nil {
		t.Fatal(err)
	}
	boot := r.reset()
	mustWriteFile(t, r.cmdline, []byte("adu.slot="+string(boot.Bank)+"\n"))
	r.startProcAgent()
	return boot
}

// reset runs the simulated U-Boot once on the device's env file.
func (r *procRig) reset() sim.Boot {
	t := r.t
	t.Helper()
	ec, err := ubootenv.LoadConfig(r.fwEnv, "")
	if err != nil {
		t.Fatal(err)
	}
	st, closeFn, err := bootloader.OpenEnvStorage(ec.Devices[0])
	if err != nil {
		t.Fatal(err)
	}
	if closeFn != nil {
		defer closeFn()
	}
	env, err := ubootenv.New(ubootenv.Options{Format: ubootenv.Format{Size: int(ec.EnvSize())}}, st)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := (&sim.Device{Env: env, Preset: bootloader.PresetAduflash}).Reset()
	if err != nil {
		t.Fatal(err)
	}
	return boot
}

// bootState reads the bootloader state through the device config, as the agent does.
func (r *procRig) bootState() bootloader.State {
	t := r.t
	t.Helper()
	cfg, err := bootloader.LoadConfig(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, closeFn, err := bootloader.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	st, err := b.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitProcDeployment polls `aduhub status --json` until no device is in progress.
func (r *procRig) waitProcDeployment(id string, within time.Duration) hub.DeploymentStatus {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var st hub.DeploymentStatus
		r.hubCLI(&st, "status", "--json", id)
		if st.Counts.InProgress == 0 && len(st.Results) > 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("deployment %s still in progress after %v: %+v", id, within, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// procDevice returns the device as `aduhub device list --json` shows it.
func (r *procRig) procDevice(id string) deviceInfo {
	r.t.Helper()
	var devs []deviceInfo
	r.hubCLI(&devs, "device", "list", "--json")
	for _, d := range devs {
		if d.DeviceID == id {
			return d
		}
	}
	r.t.Fatalf("device %s not listed: %+v", id, devs)
	return deviceInfo{}
}

func mustWriteFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// procSignedUpdate writes a signed rootfs image of raw (version v, signed by k) and its
// import manifest into dir.
func procSignedUpdate(t *testing.T, dir, v string, raw []byte, k crypto.Signer) (manifest, img string) {
	t.Helper()
	img = filepath.Join(dir, "rootfs-"+v+".aduimg")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := image.Sign(f, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{Version: v, SlotClass: "rootfs", ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	m, _, err := manifestgen.Build(context.Background(), manifestgen.Spec{
		UpdateID:      manifestgen.UpdateID{Provider: "Contoso", Name: "Toaster", Version: v},
		Compatibility: []manifestgen.Compatibility{{{Name: "manufacturer", Value: "contoso"}, {Name: "model", Value: "toaster"}}},
		Steps: []manifestgen.StepSpec{{Handler: "aduflash/image:1", Properties: manifestgen.Object{
			{Name: "installedCriteria", Value: json.RawMessage(`"` + v + `"`)},
			{Name: "slotClass", Value: json.RawMessage(`"rootfs"`)},
		}}},
		Files: []manifestgen.FileSpec{{Path: img}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifestgen.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	manifest = filepath.Join(dir, "contoso.toaster."+v+".importmanifest.json")
	mustWriteFile(t, manifest, b)
	return manifest, img
}

// procOptions tailor newProcRig.
type procOptions struct {
	hubArgs     []string // more `aduhub serve` flags
	agentConfig string   // more [agent] keys
	slotsConfig string   // more [slots] keys
	slotSize    int      // the file slots' size (default 1 MiB)
}

// newProcRig builds the binaries, starts `aduhub serve`, registers device dev1, writes its
// files (slots, U-Boot env, kernel command line, aduagent.toml with a health check that
// fails while r.unhealthy exists) and runs its agent until it has connected and reported.
func newProcRig(t *testing.T, po procOptions) *procRig {
	t.Helper()
	start := time.Now()
	root := t.TempDir()
	r := &procRig{t: t, root: root, start: start, bin: filepath.Join(root, "bin"), hubDir: filepath.Join(root, "hub"), dev: filepath.Join(root, "device"),
		agentErr: &syncbuf.Buffer{}, hubArgs: po.hubArgs}
	for _, d := range []string{r.bin, r.dev} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("aduagent stderr:\n%s", r.agentErr.String())
			if r.hubErr != nil {
				t.Logf("aduhub serve stderr:\n%s", r.hubErr.String())
			}
		}
	})
	buildProcBinaries(t, r.bin)
	t.Logf("built aduhub and aduagent in %.1fs", time.Since(start).Seconds())

	r.startProcHub()
	var added deviceAdded
	r.hubCLI(&added, "device", "add", "--json", "dev1")
	if !added.Created || !added.TLS || added.CAFile == "" || added.MQTT != r.info.DeviceMQTT || added.RootKeysFile != r.info.RootKeysFile {
		t.Fatalf("device add: %+v (serve.json %+v)", added, r.info)
	}

	// The release key the device trusts.
	k, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r.key = k
	pub := filepath.Join(r.dev, "release.pub.pem")
	pb, err := image.MarshalPublicKeyPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, pub, pb)

	// The device: file slots A (factory) and B, a U-Boot env file, the kernel command line.
	size := po.slotSize
	if size == 0 {
		size = 1 << 20
	}
	factory := bytes.Repeat([]byte("factory "), 1<<15)
	r.slotA, r.slotB = filepath.Join(r.dev, "rootfs_a.img"), filepath.Join(r.dev, "rootfs_b.img")
	mustWriteFile(t, r.slotA, append(append([]byte{}, factory...), make([]byte, size-len(factory))...))
	mustWriteFile(t, r.slotB, make([]byte, size))
	envFile := filepath.Join(r.dev, "uboot.env")
	blob, err := ubootenv.Encode([]ubootenv.Var{{Name: "adu_slot", Value: "A"}, {Name: "bootcmd", Value: "run adu_boot"}}, ubootenv.Format{Size: 0x4000}, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteFile(t, envFile, blob)
	r.fwEnv = filepath.Join(r.dev, "fw_env.config")
	mustWriteFile(t, r.fwEnv, []byte(envFile+" 0x0 0x4000\n"))
	r.cmdline = filepath.Join(r.dev, "cmdline")
	mustWriteFile(t, r.cmdline, []byte("adu.slot=A\n"))
	r.marker = filepath.Join(r.dev, "reboot-requested")
	r.unhealthy = filepath.Join(r.dev, "unhealthy")
	r.cfg = filepath.Join(r.dev, "aduagent.toml")
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	mustWriteFile(t, r.cfg, []byte(`[slots]
banks = ["A", "B"]
`+po.slotsConfig+`
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = `+q(r.slotA)+`
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "file"
path = `+q(r.slotB)+`

[bootloader]
type = "u-boot"
preset = "aduflash"
env_config = `+q(r.fwEnv)+`
lock_file = ""

[agent]
connection_string = `+q(added.ConnectionString)+`
hub_address = `+q(r.info.MQTT)+`
ca_file = `+q(added.CAFile)+`
model_id = `+q(adu.ModelContractV3)+`
manufacturer = "contoso"
model = "toaster"
state_dir = `+q(filepath.Join(r.dev, "state"))+`
pub = [`+q(pub)+`]
root_keys = `+q(r.info.RootKeysFile)+`
no_builtin_roots = true
reboot_command = ["sh", "-c", `+q("touch "+r.marker)+`]
health_timeout = "20s"
log_level = "debug"
`+po.agentConfig+`
[[agent.health_check]]
name = "app"
command = ["sh", "-c", `+q("test ! -e "+r.unhealthy)+`]
`))

	r.startProcAgent()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := r.procDevice("dev1")
		if d.Connected && d.DeviceProperties["model"] == "toaster" && d.State != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not connect and report within 10s: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("agent connected at %.1fs", time.Since(start).Seconds())
	return r
}

// importUpdate signs raw as rootfs version v with the release key and imports it.
func (r *procRig) importUpdate(v string, raw []byte) {
	r.t.Helper()
	m, img := procSignedUpdate(r.t, r.root, v, raw, r.key)
	var u hub.Update
	r.hubCLI(&u, "import", "--json", "--manifest", m, img)
	if !u.Deployable || u.UpdateID.Version != v {
		r.t.Fatalf("import %s: %+v", v, u)
	}
}

// TestProcessesEndToEnd: aduhub serve and aduagent run as separate processes (built
// binaries), the reboots simulated by the test (stop the agent, bootloader/sim's U-Boot on
// the env file, the kernel command line, start the agent again). 2.0 succeeds into bank B;
// 3.0 fails its health check in bank A, which is marked bad, and the device is back on 2.0.
func TestProcessesEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds aduhub and aduagent and runs them as processes")
	}
	r := newProcRig(t, procOptions{})
	start, slotB, unhealthy := r.start, r.slotB, r.unhealthy
	payloads := map[string][]byte{}
	for _, v := range []string{"2.0", "3.0"} {
		raw := make([]byte, 300<<10+17)
		rand.Read(raw)
		payloads[v] = raw
		r.importUpdate(v, raw)
	}

	// 2.0: written into B, pending, reboot into B, health check passes, confirmed, Succeeded.
	var dep2 hub.DeploymentStatus
	r.hubCLI(&dep2, "deploy", "--json", "--update", "Contoso/Toaster/2.0")
	if len(dep2.Devices) != 1 || dep2.Devices[0] != "dev1" {
		t.Fatalf("deploy 2.0: %+v", dep2)
	}
	if boot := r.procReboot(15 * time.Second); boot.Bank != "B" || boot.Rollback {
		t.Fatalf("reboot after 2.0: %+v, want bank B", boot)
	}
	st2 := r.waitProcDeployment(dep2.ID, 10*time.Second)
	want2 := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "2.0"}.InstalledUpdateID()
	if st2.Counts.Succeeded != 1 || st2.Results[0].State != hub.DeviceSucceeded || st2.Results[0].InstalledUpdateID != want2 {
		t.Fatalf("2.0: %+v", st2)
	}
	b, err := os.ReadFile(slotB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, payloads["2.0"]) {
		t.Fatal("slot B does not hold 2.0's payload")
	}
	if st := r.bootState(); st.Primary != "B" || st.Pending != "" || len(st.Bad) != 0 {
		t.Fatalf("bootloader after 2.0: %+v", st)
	}
	t.Logf("2.0 succeeded at %.1fs", time.Since(start).Seconds())

	// 3.0: written into A, reboot into A, the health check fails, A marked bad, reboot into
	// B, Failed with the health-check code, 2.0 installed.
	mustWriteFile(t, unhealthy, nil)
	var dep3 hub.DeploymentStatus
	r.hubCLI(&dep3, "deploy", "--json", "--update", "Contoso/Toaster/3.0")
	if boot := r.procReboot(15 * time.Second); boot.Bank != "A" || boot.Rollback {
		t.Fatalf("reboot after 3.0: %+v, want bank A", boot)
	}
	// The unhealthy marker stays: bank B is confirmed, nothing checks it on the way back.
	if boot := r.procReboot(15 * time.Second); boot.Bank != "B" {
		t.Fatalf("reboot after the failed health check: %+v, want bank B", boot)
	}
	st3 := r.waitProcDeployment(dep3.ID, 10*time.Second)
	if st3.Counts.Failed != 1 || st3.Results[0].State != hub.DeviceFailed ||
		!strings.Contains(st3.Results[0].ExtendedResultCodes, "32000020") || st3.Results[0].InstalledUpdateID != want2 {
		t.Fatalf("3.0: %+v", st3)
	}
	if agent.ERCHealth.String() != "32000020" {
		t.Fatalf("agent.ERCHealth is %s", agent.ERCHealth)
	}
	deadline := time.Now().Add(5 * time.Second)
	for d := r.procDevice("dev1"); d.InstalledUpdate != "Contoso/Toaster/2.0"; d = r.procDevice("dev1") {
		if time.Now().After(deadline) {
			t.Fatalf("the device does not report 2.0 installed: %+v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := r.bootState(); st.Primary != "B" || st.Pending != "" || !st.IsBad("A") {
		t.Fatalf("bootloader after 3.0: %+v", st)
	}
	if b, err := os.ReadFile(slotB); err != nil || !bytes.HasPrefix(b, payloads["2.0"]) {
		t.Fatalf("slot B lost 2.0's payload (%v)", err)
	}
	for _, w := range []string{"health checks passed; bank confirmed", "rolling back"} {
		if !strings.Contains(r.agentErr.String(), w) {
			t.Errorf("the agent's logs lack %q", w)
		}
	}

	// The agent and the hub stop cleanly on SIGTERM.
	stopProc(t, "aduagent run", r.agentCmd, r.agentEnd)
	if err := <-r.agentEnd; err != nil {
		t.Errorf("aduagent run exit: %v", err)
	}
	r.agentEnd <- nil
	stopProc(t, "aduhub serve", r.hubCmd, r.hubDone)
	if err := <-r.hubDone; err != nil {
		t.Errorf("aduhub serve exit: %v", err)
	}
	r.hubDone <- nil
	if _, err := os.Stat(filepath.Join(r.hubDir, serveInfoFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("serve.json left behind: %v", err)
	}
	t.Logf("done in %.1fs (%d agent starts)", time.Since(start).Seconds(), r.boots)
}
