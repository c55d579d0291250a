package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/internal/powersim"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/mtd/mtdsim"
	"github.com/aduflash/aduflash/slots"
)

// ---- images, manifests, the update server ----

type keys struct {
	img    crypto.Signer
	kr     *image.Keyring
	signer *hub.Signer
}

var (
	keysOnce sync.Once
	testKeys keys
)

func getKeys(t testing.TB) keys {
	keysOnce.Do(func() {
		k, err := image.GenerateKey(image.Ed25519, rand.Reader)
		if err != nil {
			panic(err)
		}
		kr, err := image.NewKeyring(k.Public())
		if err != nil {
			panic(err)
		}
		s, err := hub.NewSigner(rand.Reader, "ADU.test.R", "ADU.test.S", 2048)
		if err != nil {
			panic(err)
		}
		testKeys = keys{img: k, kr: kr, signer: s}
	})
	return testKeys
}

// makeImage signs raw as an aduimg image.
func makeImage(t testing.TB, raw []byte, version string, mod func(*image.SignOptions)) []byte {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "img")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	o := image.SignOptions{Version: version, SlotClass: "rootfs", ChunkSize: 32 << 10, Compression: image.CompressZstd,
		Created: time.Unix(1.7e9, 0), Compatibility: map[string]string{"model": "Board"}}
	if mod != nil {
		mod(&o)
	}
	if _, _, err := image.Sign(f, bytes.NewReader(raw), int64(len(raw)), getKeys(t).img, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func payload(seed uint64, n int) []byte {
	b, _ := io.ReadAll(testpayload.New(seed, int64(n)))
	return b
}

// server serves files with Range support and counts the body bytes it sent.
type server struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
	sent  atomic.Int64
	hits  atomic.Int64
	// hook, if set, may answer a request itself (return true).
	hook func(w http.ResponseWriter, r *http.Request) bool
}

func newServer(t testing.TB) *server {
	s := &server{files: map[string][]byte{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if s.hook != nil && s.hook(w, r) {
			return
		}
		s.mu.Lock()
		data, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		var n atomic.Int64
		http.ServeContent(&countingRW{ResponseWriter: w, n: &n}, r, "f", time.Unix(1.7e9, 0), bytes.NewReader(data))
		s.sent.Add(n.Load())
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) put(name string, data []byte) string {
	s.mu.Lock()
	s.files["/"+name] = data
	s.mu.Unlock()
	return s.URL + "/" + name
}

type countingRW struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingRW) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// update is one signed update as the service would deliver it.
type update struct {
	id       adu.UpdateID
	file     []byte
	manifest string
	sig      string
	url      string
	raw      []byte
}

type manifestOpts struct {
	handler  string
	class    string
	criteria string
	compat   string // model in the compatibility set
	sha      []byte // override the file hash
	size     int64  // override sizeInBytes
}

func newUpdate(t testing.TB, srv *server, version string, raw, file []byte, mo manifestOpts) *update {
	t.Helper()
	if mo.handler == "" {
		mo.handler = HandlerImage
	}
	if mo.class == "" {
		mo.class = "rootfs"
	}
	if mo.criteria == "" {
		mo.criteria = version
	}
	if mo.compat == "" {
		mo.compat = "Board"
	}
	sum := sha256.Sum256(file)
	sha := sum[:]
	if mo.sha != nil {
		sha = mo.sha
	}
	size := int64(len(file))
	if mo.size != 0 {
		size = mo.size
	}
	name := "rootfs-" + version + ".aduimg"
	m := fmt.Sprintf(`{"updateId":{"provider":"Contoso","name":"Board","version":%q},"compatibility":[{"manufacturer":"Contoso","model":%q}],"instructions":{"steps":[{"handler":%q,"files":["f1"],"handlerProperties":{"installedCriteria":%q,"slotClass":%q}}]},"files":{"f1":{"fileName":%q,"sizeInBytes":%d,"hashes":{"sha256":%q}}},"createdDateTime":"2026-11-22T10:00:00Z","manifestVersion":"5.0"}`,
		version, mo.compat, mo.handler, mo.criteria, mo.class, name, size, base64.StdEncoding.EncodeToString(sha))
	sig, err := getKeys(t).signer.Sign([]byte(m))
	if err != nil {
		t.Fatal(err)
	}
	return &update{id: adu.UpdateID{Provider: "Contoso", Name: "Board", Version: version}, file: file, raw: raw,
		manifest: m, sig: sig, url: srv.put(name, file)}
}

// service renders the desired deviceUpdate.service for workflow id (and retry timestamp).
func (u *update) service(id, retry string) json.RawMessage {
	wf := map[string]any{"action": 3, "id": id}
	if retry != "" {
		wf["retryTimestamp"] = retry
	}
	b, _ := json.Marshal(map[string]any{"workflow": wf, "updateManifest": u.manifest, "updateManifestSignature": u.sig,
		"fileUrls": map[string]string{"f1": u.url}})
	return b
}

func cancelService() json.RawMessage {
	return json.RawMessage(`{"workflow":{"action":255,"id":"nodeployment"},"updateManifest":null,"updateManifestSignature":null,"fileUrls":null}`)
}

// ---- an in-memory hub (the workflow over real MQTT is in hub_test.go); its reported
// document is merged as the Hub merges it ----

type memHub struct {
	mu       sync.Mutex
	ch       chan iothub.DesiredUpdate
	reports  []string
	reported map[string]any
	version  int64
	p        *powersim.Power
}

func newMemHub(p *powersim.Power) *memHub {
	return &memHub{ch: make(chan iothub.DesiredUpdate, 16), reported: map[string]any{}, p: p}
}

func (h *memHub) Desired() <-chan iothub.DesiredUpdate { return h.ch }

func (h *memHub) UpdateReported(ctx context.Context, patch json.RawMessage) (int64, error) {
	if h.p != nil {
		if err := h.p.Check(); err != nil {
			return 0, err
		}
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return 0, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reports = append(h.reports, string(patch))
	hub.MergePatch(h.reported, m)
	return int64(len(h.reports)), nil
}

// full delivers a whole twin with this service property (nil: none).
func (h *memHub) full(svc json.RawMessage) {
	h.mu.Lock()
	h.version++
	desired := map[string]any{"$version": h.version}
	if svc != nil {
		desired["deviceUpdate"] = map[string]any{"__t": "c", "service": json.RawMessage(svc)}
	}
	d, _ := json.Marshal(desired)
	r, _ := json.Marshal(h.reported)
	v := h.version
	h.mu.Unlock()
	h.ch <- iothub.DesiredUpdate{Full: true, Twin: iothub.Twin{Desired: d, Reported: r, DesiredVersion: v}, Version: v}
}

// patch delivers a desired PATCH with this service property.
func (h *memHub) patch(svc json.RawMessage) {
	h.mu.Lock()
	h.version++
	v := h.version
	h.mu.Unlock()
	d, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"__t": "c", "service": json.RawMessage(svc)}, "$version": v})
	h.ch <- iothub.DesiredUpdate{Patch: d, Version: v}
}

func (h *memHub) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.reports...)
}

// agentReports returns the reported deviceUpdate.agent objects, in order.
func (h *memHub) agentReports() []map[string]any {
	var out []map[string]any
	for _, r := range h.all() {
		var m struct {
			DU struct {
				Agent map[string]any `json:"agent"`
			} `json:"deviceUpdate"`
		}
		if json.Unmarshal([]byte(r), &m) == nil && m.DU.Agent != nil {
			out = append(out, m.DU.Agent)
		}
	}
	return out
}

// ---- the simulated board ----

type device struct {
	t       testing.TB
	dir     string
	p       *powersim.Power
	nand    map[string]*mtdsim.Flash
	env     *sim.MemEnv
	boot    *sim.Device
	cmdline string
	state   string
	cfg     *slots.Config
	healthy func(bank string) bool
	// logs, when set, receives the agents' logs.
	logs io.Writer
}

const slotsDoc = `
[slots]
active = "cmdline"
sync_interval = "32KiB"
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "nand"
mtd = "rootfs_a"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "nand"
mtd = "rootfs_b"
`

// newDevice is a board with two 1 MiB NAND slots (16 KiB blocks, 512-byte pages), U-Boot's
// aduflash preset on a memory env, bank A running factory (a raw payload).
func newDevice(t testing.TB, factory []byte) *device {
	t.Helper()
	dir := t.TempDir()
	d := &device{t: t, dir: dir, p: powersim.New(), nand: map[string]*mtdsim.Flash{}, cmdline: filepath.Join(dir, "cmdline"),
		state: filepath.Join(dir, "state"), healthy: func(string) bool { return true }}
	for _, sub := range []string{"dev", "sys"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"A", "B"} {
		f, err := mtdsim.NewNAND(1<<20, 16<<10, 512)
		if err != nil {
			t.Fatal(err)
		}
		d.nand[b] = f
	}
	if factory != nil {
		img := append(bytes.Clone(factory), bytes.Repeat([]byte{0xff}, (1<<20)-len(factory))...)
		if err := d.nand["A"].Load(img); err != nil {
			t.Fatal(err)
		}
	}
	d.env = sim.NewMemEnv(map[string]string{"adu_slot": "A"})
	d.boot = &sim.Device{Env: d.env, Preset: bootloader.PresetAduflash} // U-Boot's own saves are cut in package bootloader's tests
	cfg, err := slots.ParseConfig([]byte(slotsDoc))
	if err != nil {
		t.Fatal(err)
	}
	d.cfg = cfg
	d.setCmdline("A")
	return d
}

func (d *device) setCmdline(bank string) {
	if err := os.WriteFile(d.cmdline, []byte("console=ttyS0 adu.slot="+bank+"\n"), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// reset is a power cycle: power comes back, U-Boot runs and starts a kernel from a bank.
func (d *device) reset() sim.Boot {
	d.t.Helper()
	if d.p.IsOff() {
		d.p.On()
	} // else a cut still ahead stays armed across the reboot
	b, err := d.boot.Reset()
	if err != nil {
		d.t.Fatal(err)
	}
	d.setCmdline(string(b.Bank))
	return b
}

func (d *device) layout() *slots.Layout {
	return slots.NewLayout(d.cfg, slots.Env{Dev: filepath.Join(d.dir, "dev"), Sysfs: filepath.Join(d.dir, "sys"), Cmdline: d.cmdline,
		OpenFlash: func(s *slots.Slot) (slots.Flash, error) {
			f := d.nand[s.Bank] // the rootfs slots; other classes (reference_test.go) are keyed "<class>/<bank>"
			if g, ok := d.nand[s.Class+"/"+s.Bank]; ok {
				f = g
			}
			return powersim.Flash{Flash: f, P: d.p}, nil
		}})
}

func (d *device) backend() bootloader.Backend {
	bl, err := bootloader.NewUBoot(powersim.Env{Store: d.env, P: d.p}, bootloader.UBootConfig{Preset: bootloader.PresetAduflash, Attempts: 2})
	if err != nil {
		d.t.Fatal(err)
	}
	return bl
}

func (d *device) bootState() bootloader.State {
	st, err := d.backend().State()
	if err != nil {
		d.t.Fatal(err)
	}
	return st
}

// agent starts the agent software of the board as it is now.
func (d *device) agent(mod func(*Options)) *Agent {
	d.t.Helper()
	logs := d.logs
	if logs == nil {
		logs = io.Discard
	}
	o := Options{
		Settings: Settings{StateDir: d.state, Manufacturer: "Contoso", Model: "Board", ModelID: adu.ModelContractV2, NoBuiltinRoots: true,
			HealthChecks: []health.Check{{Name: "app", Command: []string{"app-check"}}}},
		Layout: d.layout(), Bootloader: d.backend(), JournalFS: powersim.FS{FS: journal.OSFS(), P: d.p},
		Keyring: getKeys(d.t).kr, Roots: []adu.RootKey{getKeys(d.t).signer.RootKey()},
		HealthOptions: health.Options{Exec: func(ctx context.Context, at health.Attempt) (int, error) {
			b, _ := os.ReadFile(d.cmdline)
			bank := strings.TrimSpace(string(b[strings.LastIndex(string(b), "=")+1:]))
			if d.healthy(bank) {
				return 0, nil
			}
			fmt.Fprintln(at.Output, "app did not come up")
			return 1, nil
		}},
		Retry:          fastRetry(),
		ReportBackoff:  time.Millisecond,
		ReportAttempts: 1,
		Logger:         newLogger(logs),
	}
	if mod != nil {
		mod(&o)
	}
	a, err := New(o)
	if err != nil {
		d.t.Fatal(err)
	}
	return a
}

// slotHolds tells whether the bank's slot starts with data.
func (d *device) slotHolds(bank string, data []byte) bool {
	b := make([]byte, len(data))
	if _, err := d.nand[bank].ReadAt(b, 0); err != nil {
		return false
	}
	return bytes.Equal(b, data)
}

// runAgent runs a.Run on h until it returns or until done() holds; it returns Run's error
// (nil when stopped because done held).
func runAgent(t testing.TB, a *Agent, h Hub, done func() bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx, h) }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-tick.C:
			if done != nil && done() {
				cancel()
				<-errc
				return nil
			}
		}
	}
}

// loadRecord reads the device's journal record (found false: none yet).
func loadRecord(t testing.TB, d *device) (Record, bool) {
	var r Record
	a := d.agent(nil)
	found, err := a.j.Load(&r)
	if err != nil {
		t.Fatal(err)
	}
	return r, found
}
