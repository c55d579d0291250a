package app

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
)

// fileProxy stands between the devices and aduhub's file server (aduhub serve --file-url):
// it passes requests on, or answers 503, or delivers only the first stallAt bytes of a
// response and then holds the connection until the client gives up or the test releases it.
type fileProxy struct {
	srv      *httptest.Server
	upstream atomic.Value // string: aduhub's HTTP base URL
	mode     atomic.Int32
	stallAt  atomic.Int64
	served   atomic.Int64 // body bytes sent to devices

	mu       sync.Mutex
	release  chan struct{}
	requests []proxyRequest
}

type proxyRequest struct {
	path, rng string
	status    int
}

const (
	proxyPass = iota
	proxyStall
	proxyBroken
)

func newFileProxy(t *testing.T) *fileProxy {
	p := &fileProxy{release: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() { p.releaseAll(); p.srv.Close() })
	return p
}

func (p *fileProxy) serve(w http.ResponseWriter, r *http.Request) {
	// The mode and the release of this request are fixed when it arrives: a releaseAll
	// after that ends its hold, however long the upstream answer takes.
	p.mu.Lock()
	mode, release := p.mode.Load(), p.release
	p.mu.Unlock()
	rec := proxyRequest{path: r.URL.Path, rng: r.Header.Get("Range")}
	defer func() {
		p.mu.Lock()
		p.requests = append(p.requests, rec)
		p.mu.Unlock()
	}()
	if mode == proxyBroken {
		rec.status = http.StatusServiceUnavailable
		http.Error(w, "down for maintenance", rec.status)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream.Load().(string)+r.URL.Path, nil)
	if err != nil {
		rec.status = http.StatusBadGateway
		http.Error(w, err.Error(), rec.status)
		return
	}
	for _, h := range []string{"Range", "If-Range"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		rec.status = http.StatusBadGateway
		http.Error(w, err.Error(), rec.status)
		return
	}
	// The whole answer first: a held device request must not keep aduhub's request open.
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		rec.status = http.StatusBadGateway
		http.Error(w, err.Error(), rec.status)
		return
	}
	rec.status = resp.StatusCode
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if mode == proxyStall {
		n := min(int(p.stallAt.Load()), len(body))
		m, _ := w.Write(body[:n])
		p.served.Add(int64(m))
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return // a short body: the device sees the connection end early
	}
	m, _ := w.Write(body)
	p.served.Add(int64(m))
}

// releaseAll ends the held requests (and lets later stalls hold again).
func (p *fileProxy) releaseAll() {
	p.mu.Lock()
	close(p.release)
	p.release = make(chan struct{})
	p.mu.Unlock()
}

func (p *fileProxy) log() []proxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyRequest(nil), p.requests...)
}

// restartHub stops `aduhub serve` (SIGTERM) and starts it again on the same data folder
// and addresses.
func (r *procRig) restartHub() {
	t := r.t
	t.Helper()
	stopProc(t, "aduhub serve", r.hubCmd, r.hubDone)
	if err := <-r.hubDone; err != nil {
		t.Fatalf("aduhub serve, stopped for the restart: %v", err)
	}
	r.hubDone <- nil
	mqtt, httpAddr := r.info.MQTT, strings.TrimPrefix(r.info.HTTP, "http://")
	r.hubArgs = append(r.hubArgs, "--mqtt", mqtt, "--http", httpAddr)
	old := r.info
	r.info = serveInfo{}
	r.startProcHub()
	if r.info.MQTT != old.MQTT || r.info.HTTP != old.HTTP {
		t.Fatalf("aduhub came back on %s / %s, not %s / %s", r.info.MQTT, r.info.HTTP, old.MQTT, old.HTTP)
	}
}

// agentStatus runs `aduagent status --json` on the device's config.
func (r *procRig) agentStatus() map[string]any {
	t := r.t
	t.Helper()
	cmd := exec.Command(filepath.Join(r.bin, "aduagent"), "--config", r.cfg, "--cmdline-file", r.cmdline, "status", "--json")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aduagent status: %v", err)
	}
	var st map[string]any
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("aduagent status: %v\n%s", err, out)
	}
	return st
}

// journalOffset is the file offset the device's journal would resume its download at
// (-1: no deployment in the journal).
func (r *procRig) journalOffset() int64 {
	st := r.agentStatus()
	j, _ := st["journal"].(map[string]any)
	rec, _ := j["record"].(map[string]any)
	dep, _ := rec["deployment"].(map[string]any)
	steps, _ := dep["steps"].([]any)
	if len(steps) == 0 {
		return -1
	}
	step, _ := steps[0].(map[string]any)
	prog, _ := step["progress"].(map[string]any) // an install.Record
	dl, _ := prog["download"].(map[string]any)
	off, _ := dl["offset"].(float64)
	return int64(off)
}

// deviceState is the agent state dev1 reports (-1: none).
func (r *procRig) deviceState() int {
	if d := r.procDevice("dev1"); d.State != nil {
		return *d.State
	}
	return -1
}

func (r *procRig) waitUntil(what string, within time.Duration, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProcessesDisruptions: aduhub serve and aduagent run as separate processes (built
// binaries), the update files reaching the device through a proxy the test controls. In
// turn: a deployment cancelled mid-download; a deployment that fails (the file server
// answers 503) and succeeds when retried; a deployment whose download is in flight while
// aduhub restarts; and a deployment during which the agent is killed (SIGKILL) mid-write
// and the device reset, after which the download resumes where the journal says and the
// update completes.
func TestProcessesDisruptions(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds aduhub and aduagent and runs them as processes")
	}
	proxy := newFileProxy(t)
	r := newProcRig(t, procOptions{
		hubArgs:     []string{"--file-url", proxy.srv.URL + "/files"},
		agentConfig: "download_attempts = 2\ndownload_backoff = \"100ms\"\ndownload_stall_timeout = \"60s\"\n",
		slotsConfig: "sync_interval = \"256KiB\"\n", // resume points every 256 KiB
		slotSize:    4 << 20,
	})
	proxy.upstream.Store(r.info.HTTP)
	payloads := map[string][]byte{}
	for _, v := range []string{"2.0", "3.0", "4.0"} {
		raw := make([]byte, 2<<20+17)
		rand.Read(raw)
		payloads[v] = raw
		r.importUpdate(v, raw)
	}
	holds := func(slot, v string) bool {
		b, err := os.ReadFile(slot)
		return err == nil && bytes.HasPrefix(b, payloads[v])
	}
	installed := func(v string) string {
		return adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: v}.InstalledUpdateID()
	}
	// succeeds waits for the agent's reboot into bank, then for the deployment to succeed
	// with v installed and v in the bank's slot.
	succeeds := func(what string, depID, v, bank, slot string) {
		t.Helper()
		if boot := r.procReboot(30 * time.Second); string(boot.Bank) != bank || boot.Rollback {
			t.Fatalf("%s: reboot into %+v, want bank %s", what, boot, bank)
		}
		st := r.waitProcDeployment(depID, 15*time.Second)
		if st.Counts.Succeeded != 1 || st.Results[0].InstalledUpdateID != installed(v) || !holds(slot, v) {
			t.Fatalf("%s: %+v", what, st)
		}
	}
	deploy := func(v string) hub.DeploymentStatus {
		var d hub.DeploymentStatus
		r.hubCLI(&d, "deploy", "--json", "--update", "Contoso/Toaster/"+v)
		if len(d.Devices) != 1 || d.Devices[0] != "dev1" {
			t.Fatalf("deploy %s: %+v", v, d)
		}
		return d
	}

	// 1. Cancel mid-download: the download holds after 64 KiB; the operator cancels.
	proxy.mode.Store(proxyStall)
	proxy.stallAt.Store(64 << 10)
	dep := deploy("2.0")
	r.waitUntil("the 2.0 download to start", 10*time.Second, func() bool {
		return proxy.served.Load() >= 64<<10 && r.deviceState() == int(adu.StateDeploymentInProgress)
	}) // nothing was served before
	var cancelled hub.DeploymentStatus
	r.hubCLI(&cancelled, "cancel", "--json", dep.ID)
	r.waitUntil("the device to report the cancel", 10*time.Second, func() bool { return r.deviceState() == int(adu.StateIdle) })
	st := r.waitProcDeployment(dep.ID, 10*time.Second)
	if !st.Cancelled || st.Counts.Cancelled != 1 || st.Results[0].State != hub.DeviceCancelled {
		t.Fatalf("after cancel: %+v", st)
	}
	if bs := r.bootState(); bs.Pending != "" || bs.Primary != "A" {
		t.Fatalf("bootloader after cancel: %+v", bs)
	}
	if _, err := os.Stat(r.marker); err == nil {
		t.Fatal("the agent asked for a reboot after the cancel")
	}
	t.Logf("1. cancelled mid-download at %.1fs", time.Since(r.start).Seconds())

	// 2. The file server answers 503: the deployment fails with the download code; the
	// operator retries once it is back, and the device installs 2.0 into bank B.
	proxy.mode.Store(proxyBroken)
	dep = deploy("2.0")
	st = r.waitProcDeployment(dep.ID, 20*time.Second)
	if st.Counts.Failed != 1 || st.Results[0].State != hub.DeviceFailed || st.Results[0].ExtendedResultCodes != "402001F7" {
		t.Fatalf("503: %+v", st)
	}
	if bs := r.bootState(); bs.Pending != "" || bs.Primary != "A" {
		t.Fatalf("bootloader after the failure: %+v", bs)
	}
	proxy.mode.Store(proxyPass)
	var retried retryResponse
	r.hubCLI(&retried, "retry", "--json", dep.ID)
	if len(retried.Retried) != 1 || retried.Retried[0] != "dev1" {
		t.Fatalf("retry: %+v", retried)
	}
	succeeds("2.0 after the retry", dep.ID, "2.0", "B", r.slotB)
	t.Logf("2. failed on 503, retried, succeeded at %.1fs", time.Since(r.start).Seconds())

	// 3. aduhub restarts (SIGTERM, same data and addresses) while the 3.0 download is held
	// in flight; then the held request ends early and the agent resumes the download from
	// the restarted server.
	proxy.mode.Store(proxyStall)
	served := proxy.served.Load()
	dep = deploy("3.0")
	r.waitUntil("the 3.0 download to be held", 10*time.Second, func() bool {
		return proxy.served.Load()-served >= 64<<10 && r.deviceState() == int(adu.StateDeploymentInProgress)
	})
	r.restartHub()
	proxy.mode.Store(proxyPass)
	proxy.releaseAll()
	succeeds("3.0 after the hub restart", dep.ID, "3.0", "A", r.slotA)
	t.Logf("3. lived through the hub restart, succeeded at %.1fs", time.Since(r.start).Seconds())

	// 4. Power cut mid-write: the 4.0 download holds after 1.5 MiB (a file slot's resume
	// points are 1 MiB apart); once the journal has a resume point, the agent is killed
	// (SIGKILL: nothing more written, nothing reported) and the device reset. The next start
	// continues the download at the journal's offset.
	proxy.mode.Store(proxyStall)
	proxy.stallAt.Store(3 << 19)
	before := len(proxy.log())
	served = proxy.served.Load()
	dep = deploy("4.0")
	r.waitUntil("the 4.0 download to reach 1.5 MiB", 10*time.Second, func() bool { return proxy.served.Load()-served >= 3<<19 })
	r.waitUntil("a resume point in the journal", 10*time.Second, func() bool { return r.journalOffset() > 0 })
	if err := r.agentCmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.agentEnd
	r.agentEnd <- nil
	proxy.releaseAll()
	resumeAt := r.journalOffset()
	if resumeAt <= 0 || resumeAt > 3<<19 {
		t.Fatalf("journal offset after the cut: %d", resumeAt)
	}
	firstServed := proxy.served.Load() - served
	proxy.mode.Store(proxyPass)
	if boot := r.reset(); boot.Bank != "A" {
		t.Fatalf("power-on after the cut booted %+v, want bank A (3.0)", boot)
	}
	r.startProcAgent()
	succeeds("4.0 after the power cut", dep.ID, "4.0", "B", r.slotB)
	// Every request after the cut starts at or after the journal's offset; together they
	// fetched only what the journal had not verified.
	var after []proxyRequest
	for _, q := range proxy.log()[before:] {
		if strings.Contains(q.path, "rootfs-4.0") {
			after = append(after, q)
		}
	}
	if len(after) < 2 || after[0].rng != "" {
		t.Fatalf("4.0 requests: %+v", after)
	}
	from, ok := strings.CutPrefix(after[1].rng, "bytes=")
	from, _, _ = strings.Cut(from, "-")
	n, err := strconv.ParseInt(from, 10, 64)
	if !ok || err != nil || n != resumeAt {
		t.Fatalf("the first request after the cut asked for %q, want bytes=%d-", after[1].rng, resumeAt)
	}
	fi, err := os.Stat(filepath.Join(r.root, "rootfs-4.0.aduimg"))
	if err != nil {
		t.Fatal(err)
	}
	if got := proxy.served.Load() - served - firstServed; got != fi.Size()-resumeAt {
		t.Fatalf("after the cut the device fetched %d bytes of the %d-byte file, want %d (from the journal's offset %d)", got, fi.Size(), fi.Size()-resumeAt, resumeAt)
	}
	t.Logf("4. killed at %d bytes served, resumed at %d, succeeded at %.1fs (%d agent starts)",
		firstServed, resumeAt, time.Since(r.start).Seconds(), r.boots)
}
