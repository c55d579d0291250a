package agent

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/iothub"
)

// failedThenIdle waits for a Failed report followed by an Idle one for workflow id, and
// returns the Idle report.
func failedThenIdle(h *testHub, id string) func() bool {
	return func() bool {
		rs := h.agentReports()
		for i := 0; i+1 < len(rs); i++ {
			if stateOf(rs[i]) == 255 && wfID(rs[i]) == id && stateOf(rs[i+1]) == 0 && wfID(rs[i+1]) == id {
				return true
			}
		}
		return false
	}
}

// Every bad input of an authentic deployment ends in Failed then Idle with the documented
// extended result code, with nothing pending in the bootloader and the running bank
// untouched (one that is not authentic is rejected in the ack: TestRejected).
func TestBadInputs(t *testing.T) {
	v1 := payload(1, 64<<10)
	raw := payload(2, 200<<10)
	good := makeImage(t, raw, "2.0", nil)
	untrusted := func(t *testing.T) []byte {
		k, err := image.GenerateKey(image.Ed25519, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		var out imagetest.Buffer
		if _, _, err := image.Sign(&out, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{Version: "2.0", SlotClass: "rootfs"}); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}
	tampered := bytes.Clone(good)
	tampered[len(tampered)-100] ^= 0x40
	cases := []struct {
		name string
		svc  func(t *testing.T, srv *server) json.RawMessage
		erc  adu.ExtendedResultCode
		hits bool // the update server may be asked
	}{
		{"hash mismatch", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{sha: bytes.Repeat([]byte{7}, 32)}).service("wf", "")
		}, ERCFileHash, true},
		{"tampered image, right ADU hash", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, tampered, manifestOpts{}).service("wf", "")
		}, ERCImageChunk, true},
		{"download longer than sizeInBytes", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{size: int64(len(good) - 10)}).service("wf", "")
		}, ERCDownloadTooLong, true},
		{"404", func(t *testing.T, srv *server) json.RawMessage {
			u := newUpdate(t, srv, "2.0", raw, good, manifestOpts{})
			u.url += ".missing"
			return u.service("wf", "")
		}, downloadERC(404), true},
		{"connection reset mid-download, every attempt", func(t *testing.T, srv *server) json.RawMessage {
			srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
				hj := w.(http.Hijacker)
				c, _, _ := hj.Hijack()
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(good))
				c.Write(good[:1000])
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				return true
			}
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{}).service("wf", "")
		}, ERCDownload, true},
		{"image signed by an untrusted key", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, untrusted(t), manifestOpts{}).service("wf", "")
		}, ERCImageUnknownKey, true},
		{"incompatible device", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{compat: "Other"}).service("wf", "")
		}, ERCIncompatible, false},
		{"chunks larger than max_chunk_size", func(t *testing.T, srv *server) json.RawMessage {
			img := makeImage(t, raw, "2.0", func(o *image.SignOptions) { o.ChunkSize = 2 * DefaultMaxChunkSize })
			return newUpdate(t, srv, "2.0", raw, img, manifestOpts{}).service("wf", "")
		}, ERCImageChunkTooLarge, true},
		{"image for another model", func(t *testing.T, srv *server) json.RawMessage {
			img := makeImage(t, raw, "2.0", func(o *image.SignOptions) { o.Compatibility = map[string]string{"model": "Other"} })
			return newUpdate(t, srv, "2.0", raw, img, manifestOpts{}).service("wf", "")
		}, ERCIncompatible, true},
		{"unknown handler", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{handler: "microsoft/swupdate:2"}).service("wf", "")
		}, ERCUnsupportedHandler, false},
		{"unknown slot class", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, good, manifestOpts{class: "kernel"}).service("wf", "")
		}, ERCSlotClass, false},
		{"raw file not allowed", func(t *testing.T, srv *server) json.RawMessage {
			return newUpdate(t, srv, "2.0", raw, raw, manifestOpts{}).service("wf", "")
		}, ERCRawNotAllowed, true},
		{"authentic manifest of a version the agent does not install", func(t *testing.T, srv *server) json.RawMessage {
			u := newUpdate(t, srv, "2.0", raw, good, manifestOpts{})
			u.manifest = strings.Replace(u.manifest, `"manifestVersion":"5.0"`, `"manifestVersion":"3"`, 1)
			u.sig, _ = getKeys(t).signer.Sign([]byte(u.manifest))
			return u.service("wf", "")
		}, adu.ERCUnsupportedManifestVersion, false},
		{"wrong types in the manifest", func(t *testing.T, srv *server) json.RawMessage {
			u := newUpdate(t, srv, "2.0", raw, good, manifestOpts{})
			m := strings.Replace(u.manifest, `"updateId":{"provider":"Contoso","name":"Board","version":"2.0"}`, `"updateId":"Contoso/Board/2.0"`, 1)
			if m == u.manifest {
				t.Fatal("manifest text not changed")
			}
			u.manifest = m
			u.sig, _ = getKeys(t).signer.Sign([]byte(m))
			return u.service("wf", "")
		}, adu.ERCManifestValidationFailed, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, v1)
			srv := newServer(t)
			h := newHub(t)
			if err := runAgent(t, d.agent(nil), h.deliver(tc.svc(t, srv)), failedThenIdle(h, "wf")); err != nil {
				t.Fatalf("%v; reports %v", err, h.all())
			}
			last := lastState(h)
			lir, _ := last["lastInstallResult"].(map[string]any)
			erc := adu.ExtendedResultCode(uint32(int32(lir["extendedResultCode"].(float64))))
			if lir["resultCode"] != float64(0) || (tc.erc != 0 && erc != tc.erc) || erc == 0 {
				t.Errorf("result %v (erc %s), want erc %s", lir, erc, tc.erc)
			}
			if !tc.hits && srv.Hits.Load() != 0 {
				t.Errorf("%d downloads for an update refused before downloading", srv.Hits.Load())
			}
			if st := d.bootState(); st.Pending != "" || st.Primary != "A" {
				t.Errorf("bootloader %+v", st)
			}
			if !d.slotHolds("A", v1) {
				t.Error("bank A changed")
			}
			rec := d.agent(nil).Record()
			if rec.Deployment != nil || rec.Last == nil || rec.Last.Succeeded || rec.Last.WorkflowID != "wf" {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// A desired document that does not parse is rejected (406) and reported as a failure.
func TestMalformedDesired(t *testing.T) {
	d := newDevice(t, nil)
	h := newHub(t)
	h.full(json.RawMessage(`{"workflow":{"action":"three","id":7}}`))
	if err := runAgent(t, d.agent(nil), h, func() bool { return stateOf(lastState(h)) == 0 && len(h.agentReports()) >= 3 }); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(h.all(), "\n")
	if !strings.Contains(all, `"ac":406`) || !strings.Contains(all, `"state":255`) || !strings.Contains(all, fmt.Sprint(adu.ERCManifestValidationFailed.Int32())) {
		t.Errorf("reports %s", all)
	}
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// Unknown members of a signed manifest and of the service object are ignored.
func TestUnknownFieldsIgnored(t *testing.T) {
	d := newDevice(t, payload(1, 64<<10))
	srv := newServer(t)
	raw := payload(2, 100<<10)
	u := newUpdate(t, srv, "2.0", raw, makeImage(t, raw, "2.0", nil), manifestOpts{})
	u.manifest = strings.Replace(u.manifest, `{"updateId"`, `{"futureField":{"a":[1,2]},"updateId"`, 1)
	u.sig, _ = getKeys(t).signer.Sign([]byte(u.manifest))
	var svc map[string]any
	json.Unmarshal(u.service("wf", ""), &svc)
	svc["somethingNew"] = []int{1}
	b, _ := json.Marshal(svc)
	h := newHub(t)
	h.full(b)
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("%v: %v", err, h.all())
	}
	if !d.slotHolds("B", raw) || d.bootState().Pending != "B" {
		t.Error("not installed")
	}
}

// A twin document that is not even JSON (as a broken gateway might deliver) is refused the
// same way and the agent keeps running.
func TestBrokenTwinJSON(t *testing.T) {
	d := newDevice(t, nil)
	h := newHub(t)
	raw := h.raw(iothub.DesiredUpdate{Full: true, Twin: iothub.Twin{Desired: json.RawMessage(`{"deviceUpdate":{"service":{"workflow":`), Reported: json.RawMessage(`{}`)}, Version: 3},
		iothub.DesiredUpdate{Patch: json.RawMessage(`[1,2,3]`), Version: 4})
	if err := runAgent(t, d.agent(nil), raw, func() bool { return len(h.agentReports()) >= 5 }); err != nil {
		t.Fatal(err)
	}
	all := strings.Join(h.all(), "\n")
	if strings.Count(all, `"ac":406`) != 2 || !strings.Contains(all, `"state":255`) {
		t.Errorf("reports %s", all)
	}
}
