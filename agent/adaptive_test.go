package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/internal/adaptivetest"
)

// newAdaptiveUpdate is newUpdate for an image with an adaptive index and chunk store, served
// beside it. The manifest names the index file mod makes of the built one (nil: that one),
// and the server serves what serve makes of it (nil: none).
func newAdaptiveUpdate(t *testing.T, srv *server, version string, raw []byte, mod, serve func(idx []byte) []byte) *update {
	t.Helper()
	file := makeImage(t, raw, version, nil)
	_, idx, store, err := adaptivetest.Index(file, getKeys(t).kr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		idx = mod(idx)
	}
	entry := func(name string, data []byte) map[string]any {
		sum := sha256.Sum256(data)
		return map[string]any{"fileName": name, "sizeInBytes": len(data), "hashes": map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}}
	}
	img, ix, st := entry("rootfs.aduimg", file), entry("rootfs.aduidx", idx), entry("rootfs.aduchunks", store)
	ix["properties"] = map[string]string{adaptive.RoleProperty: adaptive.RoleIndex}
	st["properties"] = map[string]string{adaptive.RoleProperty: adaptive.RoleStore}
	img["relatedFiles"] = map[string]any{"fidx": ix, "fstore": st}
	img["downloadHandler"] = map[string]string{"id": DownloadHandlerAdaptive}
	m, _ := json.Marshal(map[string]any{"updateId": map[string]string{"provider": "Contoso", "name": "Board", "version": version},
		"compatibility": []map[string]string{{"manufacturer": "Contoso", "model": "Board"}},
		"instructions": map[string]any{"steps": []any{map[string]any{"handler": HandlerImage, "files": []string{"f1"},
			"handlerProperties": map[string]string{"installedCriteria": version, "slotClass": "rootfs"}}}},
		"files": map[string]any{"f1": img}, "createdDateTime": "2026-11-22T10:00:00Z", "manifestVersion": "5.0"})
	sig, err := getKeys(t).signer.Sign(m)
	if err != nil {
		t.Fatal(err)
	}
	if idx = serve(idx); idx != nil {
		srv.put("rootfs.aduidx", idx)
	}
	srv.put("rootfs.aduchunks", store)
	return &update{id: adu.UpdateID{Provider: "Contoso", Name: "Board", Version: version}, file: file, raw: raw,
		manifest: string(m), sig: sig, url: srv.put("rootfs.aduimg", file), index: idx}
}

// adaptiveService is u.service with the related files' URLs.
func (u *update) adaptiveService(srvURL, id string) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"workflow": map[string]any{"action": 3, "id": id}, "updateManifest": u.manifest,
		"updateManifestSignature": u.sig, "fileUrls": map[string]string{"f1": u.url, "fidx": srvURL + "/rootfs.aduidx", "fstore": srvURL + "/rootfs.aduchunks"}})
	return b
}

// An update with an adaptive index installs from what bank A holds and the chunks it lacks;
// when its index cannot be had (missing, not the one the signed manifest names, not an
// index), the agent downloads the whole file, installs it, and says why in its log.
func TestAdaptiveIndexUnobtainable(t *testing.T) {
	v1 := payload(1, 256<<10)
	v2 := slices.Concat(v1[:100<<10], adaptivetest.Noise(9, 20<<10), v1[100<<10:])
	same := func(idx []byte) []byte { return idx }
	for _, tc := range []struct {
		name       string
		mod, serve func(idx []byte) []byte
		why        string // "": adaptive
	}{
		{"usable", nil, same, ""},
		{"missing", nil, func([]byte) []byte { return nil }, "404"},
		// A chunk's hash changed: the index parses, but is not the one the manifest names.
		{"tampered", nil, func(idx []byte) []byte { b := slices.Clone(idx); b[len(b)-100] ^= 1; return b }, "sha256 mismatch"},
		{"not an index", func([]byte) []byte { return []byte("not an index") }, same, "malformed index"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, v1)
			var logs bytes.Buffer
			d.logs = &logs
			srv := newServer(t)
			u := newAdaptiveUpdate(t, srv, "2.0", v2, tc.mod, tc.serve)
			h := newHub(t)
			h.full(u.adaptiveService(srv.URL, "wf-2"))
			if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
				t.Fatalf("install: %v\n%s", err, logs.String())
			}
			if st := d.bootState(); st.Pending != "B" || !d.slotHolds("B", v2) {
				t.Fatalf("after install: %+v, bank B holds v2: %v", st, d.slotHolds("B", v2))
			}
			whole := srv.Sent.Load() >= int64(len(u.file))
			fellBack := strings.Contains(logs.String(), "adaptive download not possible")
			if whole != (tc.why != "") || fellBack != (tc.why != "") || !strings.Contains(logs.String(), tc.why) {
				t.Fatalf("served %d bytes of a %d-byte image, fell back: %v; want a fallback for %q\n%s", srv.Sent.Load(), len(u.file), fellBack, tc.why, logs.String())
			}
		})
	}
}
