package devicesim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/devicesim"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/manifestgen"
)

// stand is the local IoT Hub + Device Update stand-in of a test (hub.Local), restartable on
// its data dir and addresses.
type stand struct {
	t        *testing.T
	dir      string
	mqttAddr string
	httpAddr string
	st       *hub.Stack
	// mode of the file server: 0 serves, stall sends the first 64 KiB and then nothing until
	// the request ends, broken answers 503.
	mode   atomic.Int32
	served atomic.Int64
	// up is closed while the stand serves; a stop replaces it with an open one.
	upMu sync.Mutex
	up   chan struct{}
}

// waitUp returns once the stand serves (or ctx ends): the device's retry back-off in these
// tests, so that a restart outlasts no retry budget however slowly the machine closes things.
func (s *stand) waitUp(ctx context.Context) error {
	s.upMu.Lock()
	up := s.up
	s.upMu.Unlock()
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func newStand(t *testing.T) *stand {
	s := &stand{t: t, dir: t.TempDir(), up: make(chan struct{}), mqttAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0"}
	s.start()
	t.Cleanup(s.stop)
	return s
}

// start starts the stand on its data dir and the addresses of its last start (retrying while
// the old listeners let go of them).
func (s *stand) start() {
	for i := 0; ; i++ {
		st, err := hub.Local(hub.LocalOptions{DataDir: s.dir, MQTTAddr: s.mqttAddr, HTTPAddr: s.httpAddr,
			RootKID: "ADU.e2e.R", SigningKID: "ADU.e2e.S", SignerBits: 2048, HTTPHandler: s.handler})
		if err == nil {
			s.st = st
			break
		}
		if i > 100 {
			s.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mqttAddr, s.httpAddr = s.st.MQTTAddr, s.st.HTTPAddr().String()
	s.upMu.Lock()
	close(s.up)
	s.upMu.Unlock()
}

// handler serves the stack's files as the mode says, counting the bytes served.
func (s *stand) handler(st *hub.Stack) http.Handler {
	files := st.Files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch s.mode.Load() {
		case broken:
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		case stall:
			rec := &capture{h: w.Header()}
			files.ServeHTTP(rec, r)
			w.WriteHeader(rec.code)
			n := min(64<<10, rec.body.Len())
			w.Write(rec.body.Bytes()[:n])
			s.served.Add(int64(n))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		files.ServeHTTP(httpcount.Writer{ResponseWriter: w, N: &s.served}, r)
	})
}

const (
	serving = iota
	stall
	broken
)

func (s *stand) stop() {
	if s.st != nil {
		s.upMu.Lock()
		s.up = make(chan struct{})
		s.upMu.Unlock()
		s.st.Close()
		s.st = nil
	}
}

type capture struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (c *capture) Header() http.Header         { return c.h }
func (c *capture) WriteHeader(code int)        { c.code = code }
func (c *capture) Write(p []byte) (int, error) { return c.body.Write(p) }

// importUpdate signs raw as version and imports it.
func (s *stand) importUpdate(k crypto.Signer, raw []byte, version string) adu.UpdateID {
	return s.importWith(k, raw, version, nil)
}

// importWith signs raw as version and imports it; with, if set, adds files beside the image
// (related files, by base name → path) before the manifest is built.
func (s *stand) importWith(k crypto.Signer, raw []byte, version string, with func(path string, f *manifestgen.FileSpec, files map[string]string)) adu.UpdateID {
	s.t.Helper()
	dir := s.t.TempDir()
	path := filepath.Join(dir, "rootfs-"+version+".aduimg")
	f, err := os.Create(path)
	if err != nil {
		s.t.Fatal(err)
	}
	if _, _, err := image.Sign(f, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{Version: version, SlotClass: "rootfs", ChunkSize: 64 << 10}); err != nil {
		s.t.Fatal(err)
	}
	f.Close()
	compat, _ := manifestgen.ParseCompat("manufacturer=Contoso,model=Toaster")
	step, _ := manifestgen.ParseStep(`handler=aduflash/image:1,properties={"installedCriteria":"` + version + `","slotClass":"rootfs"}`)
	fs, _ := manifestgen.ParseFile(path)
	files := map[string]string{filepath.Base(path): path}
	if with != nil {
		with(path, &fs, files)
	}
	m, _, err := manifestgen.Build(context.Background(), manifestgen.Spec{UpdateID: manifestgen.UpdateID{Provider: "Contoso", Name: "Toaster", Version: version},
		Compatibility: []manifestgen.Compatibility{compat}, Steps: []manifestgen.StepSpec{step}, Files: []manifestgen.FileSpec{fs}})
	if err != nil {
		s.t.Fatal(err)
	}
	im, _ := manifestgen.Marshal(m)
	up, err := s.st.Service.Import(im, files)
	if err != nil {
		s.t.Fatal(err)
	}
	return up.UpdateID
}

// importAdaptive is importUpdate with the image's adaptive index and chunk store as its
// related files (download handler aduflash/adaptive:1); it returns the index and its size.
func (s *stand) importAdaptive(k crypto.Signer, kr *image.Keyring, raw []byte, version string) (adu.UpdateID, *adaptive.Index, int64) {
	var x *adaptive.Index
	var n int64
	id := s.importWith(k, raw, version, func(path string, f *manifestgen.FileSpec, files map[string]string) {
		x, n = writeIndex(s.t, path, kr)
		f.DownloadHandler = agent.DownloadHandlerAdaptive
		for ext, role := range map[string]string{".aduidx": adaptive.RoleIndex, ".aduchunks": adaptive.RoleStore} {
			p := strings.TrimSuffix(path, ".aduimg") + ext
			f.Related = append(f.Related, manifestgen.RelatedFileSpec{Path: p, Properties: manifestgen.Object{}.With(adaptive.RoleProperty, json.RawMessage(strconv.Quote(role)))})
			files[filepath.Base(p)] = p
		}
	})
	return id, x, n
}

// writeIndex writes the adaptive index and chunk store of the image at path beside it, with
// delta frames against the factory payload.
func writeIndex(t *testing.T, path string, kr *image.Keyring) (*adaptive.Index, int64) {
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	x, idx, store, err := adaptivetest.Index(img, kr, factory)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(path, ".aduimg")
	if err := errors.Join(os.WriteFile(base+".aduidx", idx, 0o644), os.WriteFile(base+".aduchunks", store, 0o644)); err != nil {
		t.Fatal(err)
	}
	return x, int64(len(idx))
}

type rig struct {
	t     *testing.T
	s     *stand
	key   crypto.Signer
	kr    *image.Keyring
	dev   *devicesim.Device
	id    string
	stop  func()
	slotN int
}

// factory is what bank A's rootfs slot of a rig's device holds at first power-on.
var factory = payload(1, 256<<10)

func payload(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

// newRig starts a stand and one device running against it; healthy says which contents pass
// the health check.
func newRig(t *testing.T, healthy func(content []byte) bool) *rig {
	s := newStand(t)
	k, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	kr, _ := image.NewKeyring(k.Public())
	r := &rig{t: t, s: s, key: k, kr: kr, id: "toaster-1"}
	// The device is not registered: it provisions itself through the hub's DPS, as an
	// enrollment group's device does.
	groupKey := base64.StdEncoding.EncodeToString([]byte("toaster-group-key-0123456789abcd"))
	if err := s.st.Hub.AddEnrollment(hub.Enrollment{ID: "toasters", Group: true, Key: groupKey}); err != nil {
		t.Fatal(err)
	}
	key, _ := dps.DeriveKey(groupKey, r.id)
	cn := &agent.Connector{
		Hub:       iothub.Config{Address: s.mqttAddr, InsecurePlainTCP: true, ModelID: adu.ModelContractV3, MaxReconnectInterval: 200 * time.Millisecond},
		DPS:       &dps.Config{IDScope: s.st.Hub.IDScope(), RegistrationID: r.id, SymmetricKey: key, Endpoint: s.mqttAddr, InsecurePlainTCP: true},
		CachePath: filepath.Join(t.TempDir(), agent.DPSCacheFile),
	}
	dev, err := devicesim.New(devicesim.Options{Board: board.Options{Dir: t.TempDir(), SlotSize: 4 << 20, EraseSize: 64 << 10, PageSize: 2048, Factory: factory},
		Manufacturer: "Contoso", Model: "Toaster", Keyring: kr, Roots: []adu.RootKey{s.st.Signer.RootKey()}, NoBuiltinRoots: true, ModelID: adu.ModelContractV3,
		Healthy: func(bank string, content []byte) bool { return healthy == nil || healthy(content) },
		Connect: devicesim.ConnectWith(cn),
		Agent: func(o *agent.Options) {
			o.Retry.Sleep = func(ctx context.Context, d time.Duration) error { return s.waitUp(ctx) }
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.dev = dev
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dev.Run(ctx); close(done) }()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	r.waitFor("the device reports its properties", func() bool {
		tw, err := s.st.Hub.Twin(r.id)
		return err == nil && bytes.Contains(tw, []byte(`"deviceProperties"`))
	})
	return r
}

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tw, _ := r.s.st.Hub.Twin(r.id)
			r.t.Fatalf("timed out waiting for %s; twin %s", what, tw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *rig) deviceState(depID string) hub.DeviceState {
	st, err := r.s.st.Service.Status(depID)
	if err != nil || len(st.Results) != 1 {
		return ""
	}
	return st.Results[0].State
}

func (r *rig) agentState() int {
	tw, _ := r.s.st.Hub.Twin(r.id)
	var doc struct {
		Reported struct {
			DU struct {
				Agent struct {
					State int `json:"state"`
				} `json:"agent"`
			} `json:"deviceUpdate"`
		} `json:"reported"`
	}
	json.Unmarshal(tw, &doc)
	return doc.Reported.DU.Agent.State
}

// End to end against the stand-in: a deployment cancelled mid-download, then retried after a
// failure, then one that lives through a hub restart mid-download, then one cut by a power
// failure mid-write.
func TestEndToEndAgainstStandIn(t *testing.T) {
	r := newRig(t, nil)
	s := r.s
	v2 := payload(2, 1<<20)
	u2 := s.importUpdate(r.key, v2, "2.0")
	group := map[string]string{"manufacturer": "Contoso", "model": "Toaster"}

	// Cancel mid-download: the download stalls, the operator cancels.
	s.mode.Store(stall)
	dep, err := s.st.Service.Deploy(u2, group)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("the download to start", func() bool { return s.served.Load() > 0 && r.agentState() == 6 })
	if err := s.st.Service.Cancel(dep.ID); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the device to report the cancel", func() bool { return r.agentState() == 0 })
	if got := r.deviceState(dep.ID); got != hub.DeviceCancelled {
		t.Fatalf("after cancel: %s", got)
	}
	if st, _ := r.dev.BootState(); st.Pending != "" {
		t.Fatalf("pending after cancel: %+v", st)
	}

	// A failure (the file server answers 503 until the agent gives up), then the operator's
	// retry succeeds.
	s.mode.Store(broken)
	dep, err = s.st.Service.Deploy(u2, group)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("the deployment to fail", func() bool { return r.deviceState(dep.ID) == hub.DeviceFailed })
	st, _ := s.st.Service.Status(dep.ID)
	if st.Results[0].ExtendedResultCodes != agent.ERCDownload.String() && st.Results[0].ExtendedResultCodes != "402001F7" {
		t.Errorf("failure codes %q", st.Results[0].ExtendedResultCodes)
	}
	s.mode.Store(serving)
	if _, err := s.st.Service.Retry(dep.ID); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the retry to succeed", func() bool { return r.deviceState(dep.ID) == hub.DeviceSucceeded })
	if r.dev.Running() != "B" || !bytes.Equal(r.dev.Slot("B", len(v2)), v2) {
		t.Fatalf("after retry: running %s", r.dev.Running())
	}

	// Hub restart mid-download: MQTT, Service and file server go away and come back on the
	// same data and addresses; the device reconnects and the deployment completes.
	v3 := payload(3, 1<<20)
	u3 := s.importUpdate(r.key, v3, "3.0")
	s.mode.Store(stall)
	dep, err = s.st.Service.Deploy(u3, group)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("the v3 download to start", func() bool { return r.agentState() == 6 && s.served.Load() > 0 })
	s.stop()
	s.mode.Store(serving)
	s.start()
	r.waitFor("v3 to succeed after the hub restart", func() bool { return r.deviceState(dep.ID) == hub.DeviceSucceeded })
	if r.dev.Running() != "A" || !bytes.Equal(r.dev.Slot("A", len(v3)), v3) {
		t.Fatalf("after v3: running %s", r.dev.Running())
	}

	// Power cut mid-write: the update completes after power returns, without downloading
	// what was already verified again.
	v4 := payload(4, 2<<20)
	u4 := s.importUpdate(r.key, v4, "4.0")
	before := s.served.Load()
	// The cut comes after the first resume point (1 MiB in: 512 page programs, 16 erases and
	// a few journal operations) and before the end (twice that).
	r.dev.Power().CutAfter(800)
	dep, err = s.st.Service.Deploy(u4, group)
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("v4 to succeed after a power cut", func() bool { return r.deviceState(dep.ID) == hub.DeviceSucceeded })
	if r.dev.Running() != "B" || !bytes.Equal(r.dev.Slot("B", len(v4)), v4) {
		t.Fatalf("after v4: running %s", r.dev.Running())
	}
	up, _ := s.st.Service.Update(u4)
	size := up.Files[0].SizeInBytes
	if got := s.served.Load() - before; got >= 2*size {
		t.Errorf("served %d bytes for a %d-byte file across one power cut", got, size)
	}
	t.Logf("v4: %d bytes served for a %d-byte file, %d boots", s.served.Load()-before, size, r.dev.Boots())
}

// An adaptive deployment through the stand-in: the hub imports 2.0 with its adaptive index and
// chunk store as related files; the device installs it from bank A's slot and the chunks it
// lacks and reports success, and the hub served no more than the index, the image's header
// and the frames of the chunks bank A lacks.
func TestAdaptiveDeploymentThroughHub(t *testing.T) {
	r := newRig(t, nil)
	s := r.s
	v2 := slices.Concat(factory[:100<<10], adaptivetest.Noise(2, 20<<10), factory[100<<10:], adaptivetest.Noise(3, 10<<10))
	u2, x, indexLen := s.importAdaptive(r.key, r.kr, v2, "2.0")
	dep, err := s.st.Service.Deploy(u2, map[string]string{"manufacturer": "Contoso", "model": "Toaster"})
	if err != nil {
		t.Fatal(err)
	}
	r.waitFor("the adaptive deployment to succeed", func() bool { return r.deviceState(dep.ID) == hub.DeviceSucceeded })
	if r.dev.Running() != "B" || !bytes.Equal(r.dev.Slot("B", len(v2)), v2) {
		t.Fatalf("after 2.0: running %s", r.dev.Running())
	}
	up, _ := s.st.Service.Update(u2)
	bound := indexLen + x.HeaderSize + adaptivetest.StoreBound(x, adaptivetest.Held(x, r.dev.Slot("A", 4<<20)), 0)
	if got := s.served.Load(); got > bound || got == 0 {
		t.Fatalf("served %d bytes; the index, the header and the chunks bank A lacks are %d (the image is %d)", got, bound, up.Files[0].SizeInBytes)
	}
	t.Logf("served %d bytes of a %d-byte image (bound %d)", s.served.Load(), up.Files[0].SizeInBytes, bound)
}
