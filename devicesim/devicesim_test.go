package devicesim

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/internal/testwait"
	"github.com/aduflash/aduflash/iothub"
)

type world struct {
	t      *testing.T
	h      *hub.Hub
	signer *hub.Signer
	files  *httptest.Server
	served httpcount.Files
	kr     *image.Keyring
	sign   func(raw []byte, version string) []byte
}

func payload(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

func newWorld(t *testing.T) *world {
	h, err := hub.New(hub.Options{HostName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	s, err := hub.NewSigner(rand.Reader, "ADU.demo.R", "ADU.demo.S", 2048)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	kr, _ := image.NewKeyring(k.Public())
	w := &world{t: t, h: h, signer: s, kr: kr}
	w.files = httptest.NewServer(&w.served)
	t.Cleanup(w.files.Close)
	w.sign = func(raw []byte, version string) []byte {
		var out imagetest.Buffer
		if _, _, err := image.Sign(&out, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{Version: version, SlotClass: "rootfs", ChunkSize: 64 << 10}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	return w
}

func (w *world) device(id string, healthy func(string, []byte) bool) *Device {
	key := base64.StdEncoding.EncodeToString([]byte(id + "-0123456789abcdef0123456789"))
	if err := w.h.RegisterDevice(id, key); err != nil {
		w.t.Fatal(err)
	}
	d, err := New(Options{Board: board.Options{Dir: w.t.TempDir(), SlotSize: 2 << 20, EraseSize: 64 << 10, PageSize: 2048, Factory: payload(1, 300<<10)},
		Manufacturer: "Contoso", Model: "Toaster", Keyring: w.kr, Roots: []adu.RootKey{w.signer.RootKey()}, NoBuiltinRoots: true, ModelID: adu.ModelV3, Healthy: healthy,
		Connect: func(ctx context.Context) (agent.Hub, func(), error) {
			c, err := iothub.Dial(ctx, iothub.Config{Identity: iothub.ConnectionString{HostName: "localhost", DeviceID: id, SharedAccessKey: key},
				Address: w.h.Addr().String(), InsecurePlainTCP: true, ModelID: adu.ModelV3})
			if err != nil {
				return nil, nil, err
			}
			return c, c.Close, nil
		}})
	if err != nil {
		w.t.Fatal(err)
	}
	return d
}

// deploy sets the desired service of device id for an update of raw at version.
func (w *world) deploy(id, wf string, raw []byte, version string) adu.UpdateID {
	file := w.sign(raw, version)
	name := fmt.Sprintf("/rootfs-%s.aduimg", version)
	w.served.Put(name, file)
	sum := sha256.Sum256(file)
	m := fmt.Sprintf(`{"updateId":{"provider":"Contoso","name":"Toaster","version":%q},"compatibility":[{"manufacturer":"Contoso","model":"Toaster"}],"instructions":{"steps":[{"handler":"aduflash/image:1","files":["f0"],"handlerProperties":{"installedCriteria":%q,"slotClass":"rootfs"}}]},"files":{"f0":{"fileName":"rootfs.aduimg","sizeInBytes":%d,"hashes":{"sha256":%q}}},"createdDateTime":"2026-11-22T10:00:00Z","manifestVersion":"5.0"}`,
		version, version, len(file), base64.StdEncoding.EncodeToString(sum[:]))
	sig, err := w.signer.Sign([]byte(m))
	if err != nil {
		w.t.Fatal(err)
	}
	svc, _ := json.Marshal(map[string]any{"workflow": map[string]any{"action": 3, "id": wf}, "updateManifest": m, "updateManifestSignature": sig,
		"fileUrls": map[string]string{"f0": w.files.URL + name}})
	patch, _ := json.Marshal(map[string]any{"deviceUpdate": map[string]any{"__t": "c", "service": json.RawMessage(svc)}})
	if _, err := w.h.SetDesired(id, patch); err != nil {
		w.t.Fatal(err)
	}
	return adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: version}
}

func (w *world) reported(id string) map[string]any {
	ag, _ := w.h.ReportedAgent(id)
	return ag
}

func (w *world) waitFor(what string, cond func() bool) {
	w.t.Helper()
	testwait.Until(w.t, 30*time.Second, what, cond)
}

func state(ag map[string]any) (int, string, string) {
	s, _ := ag["state"].(float64)
	wf, _ := ag["workflow"].(map[string]any)
	id, _ := wf["id"].(string)
	inst, _ := ag["installedUpdateId"].(string)
	return int(s), id, inst
}

// The device lives through an update (reboot into B, confirm) and a bad one (reboot into A,
// health fails, back to B), driven through the hub like the service does it, and through a
// power cut in the middle of writing an update.
func TestDeviceLifeCycle(t *testing.T) {
	w := newWorld(t)
	v3 := payload(3, 500<<10)
	d := w.device("toaster-1", func(bank string, content []byte) bool { return !bytes.HasPrefix(content, v3[:4096]) })
	var evMu sync.Mutex
	var events []Event
	d.o.Events = func(e Event) { evMu.Lock(); events = append(events, e); evMu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	w.waitFor("startup", func() bool { s, _, _ := state(w.reported("toaster-1")); return w.h.Connected("toaster-1") && s == 0 })

	v2 := payload(2, 600<<10)
	u2 := w.deploy("toaster-1", "wf-2", v2, "2.0")
	w.waitFor("v2 success", func() bool {
		s, id, inst := state(w.reported("toaster-1"))
		return s == 0 && id == "wf-2" && inst == u2.InstalledUpdateID()
	})
	if d.Running() != "B" || !bytes.Equal(d.Slot("B", len(v2)), v2) {
		t.Fatalf("running %s after v2", d.Running())
	}
	if st, _ := d.BootState(); st.Pending != "" || st.Primary != "B" {
		t.Fatalf("boot state %+v", st)
	}

	w.deploy("toaster-1", "wf-3", v3, "3.0")
	w.waitFor("v3 failure", func() bool {
		s, id, inst := state(w.reported("toaster-1"))
		lir, _ := w.reported("toaster-1")["lastInstallResult"].(map[string]any)
		return s == 0 && id == "wf-3" && inst == u2.InstalledUpdateID() && lir["resultCode"] == float64(0)
	})
	if d.Running() != "B" {
		t.Fatalf("running %s after the failed v3", d.Running())
	}
	lir, _ := w.reported("toaster-1")["lastInstallResult"].(map[string]any)
	if lir["extendedResultCodes"] != agent.ERCHealth.String() {
		t.Errorf("v3 result %v", lir)
	}

	// v4 with a power cut while it is written: after the power returns it completes.
	v4 := payload(4, 700<<10)
	d.Power().CutAfter(40)
	u4 := w.deploy("toaster-1", "wf-4", v4, "4.0")
	w.waitFor("v4 success", func() bool {
		s, id, inst := state(w.reported("toaster-1"))
		return s == 0 && id == "wf-4" && inst == u4.InstalledUpdateID()
	})
	evMu.Lock()
	defer evMu.Unlock()
	var kinds []string
	for _, e := range events {
		if e.Kind != "written" {
			kinds = append(kinds, e.Kind+":"+e.Bank)
		}
	}
	t.Logf("events: %v", kinds)
	cuts := 0
	for _, k := range kinds {
		if k[:5] == "power" {
			cuts++
		}
	}
	if cuts != 1 {
		t.Errorf("%d power cuts in %v", cuts, kinds)
	}
}
