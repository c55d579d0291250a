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
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/sim"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/iothub"
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
	o := image.SignOptions{Version: version, SlotClass: "rootfs", ChunkSize: 32 << 10, Compression: image.CompressZstd,
		Created: time.Unix(1.7e9, 0), Compatibility: map[string]string{"model": "Board"}}
	if mod != nil {
		mod(&o)
	}
	var out imagetest.Buffer
	if _, _, err := image.Sign(&out, bytes.NewReader(raw), int64(len(raw)), getKeys(t).img, o); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func payload(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

// server serves files with Range support and counts the requests and body bytes.
type server struct {
	*httptest.Server
	httpcount.Files
}

func newServer(t testing.TB) *server {
	s := &server{}
	s.Server = httptest.NewServer(&s.Files)
	t.Cleanup(s.Close)
	return s
}

// stall makes the server answer every request for name with the first 1000 bytes of its
// file (half of a shorter one) and then hold it, until release; afterwards the file is served as put left it (drop
// it first for a 404).
func (s *server) stall(name string) (release func()) {
	gate := make(chan struct{})
	var once sync.Once
	s.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		data, ok := s.Get("/" + name)
		select {
		case <-gate:
			return false
		default:
		}
		if !ok || r.URL.Path != "/"+name {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.WriteHeader(200)
		w.Write(data[:min(1000, len(data)/2)])
		w.(http.Flusher).Flush()
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		return true
	}
	return func() { once.Do(func() { close(gate) }) }
}

// drop removes the file name: requests for it get 404.
func (s *server) drop(name string) { s.Drop("/" + name) }

func (s *server) put(name string, data []byte) string {
	s.Put("/"+name, data)
	return s.URL + "/" + name
}

// update is one signed update as the service would deliver it.
type update struct {
	id       adu.UpdateID
	file     []byte
	manifest string
	sig      string
	url      string
	raw      []byte
	index    []byte // the adaptive index (newAdaptiveUpdate)
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

// ---- the IoT Hub: the stand-in of package hub, over MQTT ----

// testHub is the device's IoT Hub in these tests: the hub stand-in (package hub) in process
// on 127.0.0.1, with the device registered, and the device's MQTT connection (iothub.Client)
// of its current boot. It is the agent's Hub, and keeps every reported patch the device sent
// over it, in order, as sent.
type testHub struct {
	t     testing.TB
	h     *hub.Hub
	key   string
	model string // the model id the device connects with

	mu      sync.Mutex
	c       *iothub.Client
	version int64 // the desired $version setService made last
	patches []string
}

const deviceID = "board-1"

// newHub starts a hub with the device registered; the device is not connected yet.
func newHub(t testing.TB) *testHub {
	t.Helper()
	h, err := hub.New(hub.Options{HostName: "localhost", TwinRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	e := &testHub{t: t, h: h, key: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")), model: adu.ModelContractV2}
	t.Cleanup(func() {
		e.disconnect()
		h.Close()
	})
	if err := h.RegisterDevice(deviceID, e.key); err != nil {
		t.Fatal(err)
	}
	return e
}

// connect opens the device's connection of a new boot (closing the last one): the device
// gets its whole twin on it.
func (e *testHub) connect() {
	e.t.Helper()
	e.disconnect()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := iothub.Dial(ctx, iothub.Config{
		Identity: iothub.ConnectionString{HostName: "localhost", DeviceID: deviceID, SharedAccessKey: e.key},
		Address:  e.h.Addr().String(), InsecurePlainTCP: true, ModelID: e.model,
		MaxReconnectInterval: 200 * time.Millisecond,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.c = c
	e.mu.Unlock()
}

func (e *testHub) disconnect() {
	e.mu.Lock()
	c := e.c
	e.c = nil
	e.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// setService sets the desired deviceUpdate.service (merged, as the service patches the
// twin) and returns the desired $version; a connected device gets it as a desired PATCH.
func (e *testHub) setService(svc json.RawMessage) int64 {
	e.t.Helper()
	patch, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"__t": "c", "service": svc}})
	v, err := e.h.SetDesired(deviceID, patch)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mu.Lock()
	e.version = v
	e.mu.Unlock()
	return v
}

// full is a boot with svc in the desired properties: the device connects anew and gets the
// whole twin.
func (e *testHub) full(svc json.RawMessage) {
	e.disconnect()
	e.setService(svc)
	e.connect()
}

// patch delivers svc to the connected device as a desired PATCH.
func (e *testHub) patch(svc json.RawMessage) { e.setService(svc) }

func (e *testHub) conn() (*iothub.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.c == nil {
		return nil, iothub.ErrNotConnected
	}
	return e.c, nil
}

func (e *testHub) Desired() <-chan iothub.DesiredUpdate {
	c, err := e.conn()
	if err != nil { // as from a closed connection
		ch := make(chan iothub.DesiredUpdate)
		close(ch)
		return ch
	}
	return c.Desired()
}

func (e *testHub) UpdateReported(ctx context.Context, patch json.RawMessage) (int64, error) {
	c, err := e.conn()
	if err != nil {
		return 0, err
	}
	v, err := c.UpdateReported(ctx, patch)
	if err == nil {
		e.mu.Lock()
		e.patches = append(e.patches, string(patch))
		e.mu.Unlock()
	}
	return v, err
}

// all returns the reported patches the device sent, in order.
func (e *testHub) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.patches...)
}

// agentReports returns the reported deviceUpdate.agent objects, in order.
func (e *testHub) agentReports() []map[string]any {
	var out []map[string]any
	for _, r := range e.all() {
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

// agentReported returns the hub's reported deviceUpdate.agent.
func (e *testHub) agentReported() map[string]any {
	ag, err := e.h.ReportedAgent(deviceID)
	if err != nil {
		e.t.Fatal(err)
	}
	return ag
}

// acked tells whether the device acknowledged the desired $version v.
func (e *testHub) acked(v int64) bool {
	for _, p := range e.all() {
		var m struct {
			DU struct {
				Service struct {
					Version int64 `json:"av"`
				} `json:"service"`
			} `json:"deviceUpdate"`
		}
		if json.Unmarshal([]byte(p), &m) == nil && m.DU.Service.Version == v {
			return true
		}
	}
	return false
}

// settled returns a runAgent condition that holds once the agent has handled the twin of
// the last full: it acknowledges a desired $version before it acts on it and handles
// desired updates one at a time, so an empty service patch sent after the twin's
// acknowledgement is acknowledged only after the twin was handled.
func (e *testHub) settled() func() bool {
	e.mu.Lock()
	twin := e.version
	e.mu.Unlock()
	var probe int64
	return func() bool {
		if probe == 0 {
			if !e.acked(twin) {
				return false
			}
			probe = e.setService(json.RawMessage(`{}`))
		}
		return e.acked(probe)
	}
}

// rawDesired is the agent's hub with desired updates the test writes itself, such as the
// hub stand-in never sends (as IoT Hub, it refuses a desired document that is not a JSON
// object or is larger than 32 KiB) but a broken gateway might; the reports go to the hub.
type rawDesired struct {
	*testHub
	ch chan iothub.DesiredUpdate
}

func (r rawDesired) Desired() <-chan iothub.DesiredUpdate { return r.ch }

// raw connects the device and returns its hub with the desired updates evs.
func (e *testHub) raw(evs ...iothub.DesiredUpdate) rawDesired {
	e.connect()
	r := rawDesired{testHub: e, ch: make(chan iothub.DesiredUpdate, len(evs))}
	for _, ev := range evs {
		r.ch <- ev
	}
	return r
}

// deliver is a boot with svc in the desired properties, through the hub (full) or, for a
// document the hub refuses, as a whole twin it never sends.
func (e *testHub) deliver(svc json.RawMessage) Hub {
	if len(svc) <= hub.MaxPatchSize {
		e.full(svc)
		return e
	}
	desired, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"__t": "c", "service": svc}, "$version": 2})
	return e.raw(iothub.DesiredUpdate{Full: true, Twin: iothub.Twin{Desired: desired, Reported: json.RawMessage(`{}`), DesiredVersion: 2}, Version: 2})
}

// ---- the simulated board (package devicesim/board, as devicesim runs it) ----

// device is a board with two 1 MiB NAND banks (16 KiB blocks, 512-byte pages), booted into
// bank A, which runs factory (a raw payload), and the agents the tests start on it.
type device struct {
	*board.Board
	t       testing.TB
	healthy func(bank string) bool
	// logs, when set, receives the agents' logs.
	logs io.Writer
}

// stateDir is the agent's state folder in the board's file system.
const stateDir = "/var/lib/aduagent"

func newDevice(t testing.TB, factory []byte) *device {
	return newBoardDevice(t, board.Options{Factory: factory})
}

// newBoardDevice is newDevice with other options (the geometry defaults to newDevice's).
func newBoardDevice(t testing.TB, o board.Options) *device {
	t.Helper()
	o.Dir = t.TempDir()
	if o.SlotSize == 0 {
		o.SlotSize, o.EraseSize, o.PageSize = 1<<20, 16<<10, 512
	}
	if o.SyncInterval == 0 {
		o.SyncInterval = 32 << 10
	}
	b, err := board.New(o)
	if err != nil {
		t.Fatal(err)
	}
	d := &device{Board: b, t: t, healthy: func(string) bool { return true }}
	d.reset()
	return d
}

// reset is a power cycle: power comes back, U-Boot runs and starts a kernel from a bank.
func (d *device) reset() sim.Boot {
	d.t.Helper()
	b, err := d.PowerOn()
	if err != nil {
		d.t.Fatal(err)
	}
	return b
}

func (d *device) backend() bootloader.Backend {
	bl, err := d.Bootloader()
	if err != nil {
		d.t.Fatal(err)
	}
	return bl
}

// bootState is the bootloader state, whatever the power.
func (d *device) bootState() bootloader.State {
	st, err := d.BootState()
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
		Settings: Settings{StateDir: stateDir, Manufacturer: "Contoso", Model: "Board", ModelID: adu.ModelContractV2, NoBuiltinRoots: true,
			HealthChecks: []health.Check{{Name: "app", Command: []string{"app-check"}}}},
		Layout: d.Layout(), Bootloader: d.backend(), JournalFS: d.FS(),
		Keyring: getKeys(d.t).kr, Roots: []adu.RootKey{getKeys(d.t).signer.RootKey()},
		HealthOptions: health.Options{Exec: func(ctx context.Context, at health.Attempt) (int, error) {
			if d.healthy(d.Running()) {
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

// wipeState removes every file of the agent's state folder.
func (d *device) wipeState() {
	d.t.Helper()
	names, err := d.FS().ReadDir(stateDir)
	if err != nil {
		d.t.Fatal(err)
	}
	for _, n := range names {
		if err := d.FS().Remove(filepath.Join(stateDir, n)); err != nil {
			d.t.Fatal(err)
		}
	}
}

// slotHolds tells whether the bank's rootfs slot starts with data.
func (d *device) slotHolds(bank string, data []byte) bool {
	return bytes.Equal(d.Slot(bank, len(data)), data)
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
