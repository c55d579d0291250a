package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/manifestgen"
)

// ---- manifests with reference steps ----

// mfile is a file entry of a test manifest, served at url.
type mfile struct {
	id, name string
	data     []byte
	sha      []byte // overrides the entry's sha256
	size     int64  // overrides sizeInBytes
	url      string
}

// mstep is a step of a test manifest: a reference step when ref is set.
type mstep struct {
	ref                      string // detachedManifestFileId
	file                     string // the file id of an inline step
	handler, class, criteria string
}

// manifestJSON renders an update manifest v5 (compatibility model=Board).
func manifestJSON(name, version string, steps []mstep, files []mfile) string {
	var ss []any
	for _, s := range steps {
		if s.ref != "" {
			ss = append(ss, map[string]any{"type": "reference", "detachedManifestFileId": s.ref})
			continue
		}
		h := s.handler
		if h == "" {
			h = HandlerImage
		}
		ss = append(ss, map[string]any{"handler": h, "files": []string{s.file},
			"handlerProperties": map[string]string{"installedCriteria": s.criteria, "slotClass": s.class}})
	}
	fs := map[string]any{}
	for _, f := range files {
		sum := sha256.Sum256(f.data)
		sha := sum[:]
		if f.sha != nil {
			sha = f.sha
		}
		size := int64(len(f.data))
		if f.size != 0 {
			size = f.size
		}
		fs[f.id] = map[string]any{"fileName": f.name, "sizeInBytes": size, "hashes": map[string]string{"sha256": base64.StdEncoding.EncodeToString(sha)}}
	}
	b, _ := json.Marshal(map[string]any{"manifestVersion": "5", "updateId": map[string]string{"provider": "Contoso", "name": name, "version": version},
		"compatibility": []map[string]string{{"manufacturer": "Contoso", "model": "Board"}}, "instructions": map[string]any{"steps": ss},
		"files": fs, "createdDateTime": "2026-11-22T10:00:00Z"})
	return string(b)
}

// childFile is the detached manifest file of a child update, as the service serves it.
func childFile(manifest string) []byte {
	b, _ := json.Marshal(map[string]string{"updateManifest": manifest})
	return b
}

// refUpdate is a signed parent update and the fileUrls of the parent's and its children's files.
type refUpdate struct {
	id       adu.UpdateID
	manifest string
	sig      string
	urls     map[string]string
}

func (u *refUpdate) service(id, retry string) json.RawMessage {
	wf := map[string]any{"action": 3, "id": id}
	if retry != "" {
		wf["retryTimestamp"] = retry
	}
	b, _ := json.Marshal(map[string]any{"workflow": wf, "updateManifest": u.manifest, "updateManifestSignature": u.sig, "fileUrls": u.urls})
	return b
}

// refFixture is a parent Contoso/Board <version> whose steps are an inline rootfs step
// (when withInline) and a reference step to Contoso/Board-App <version>, whose one step
// writes the app class.
type refFixture struct {
	rootfsRaw, appRaw []byte
	rootfsImg, appImg []byte
	child             string // the child manifest
	childFile         []byte
	files             []mfile // the parent's
	steps             []mstep
	childFiles        []mfile
}

func newRefFixture(t testing.TB, version string, withInline bool) *refFixture {
	f := &refFixture{rootfsRaw: payload(20, 200<<10), appRaw: payload(21, 150<<10)}
	f.rootfsImg = makeImage(t, f.rootfsRaw, version, nil)
	f.appImg = makeImage(t, f.appRaw, version, func(o *image.SignOptions) { o.SlotClass = "app" })
	f.childFiles = []mfile{{id: "fapp", name: "app-" + version + ".aduimg", data: f.appImg}}
	f.child = manifestJSON("Board-App", version, []mstep{{file: "fapp", class: "app", criteria: "app-" + version}}, f.childFiles)
	f.childFile = childFile(f.child)
	if withInline {
		f.files = append(f.files, mfile{id: "froot", name: "rootfs-" + version + ".aduimg", data: f.rootfsImg})
		f.steps = append(f.steps, mstep{file: "froot", class: "rootfs", criteria: version})
	}
	f.files = append(f.files, mfile{id: "fchild", name: "contoso.board-app." + version + ".updatemanifest.json", data: f.childFile})
	f.steps = append(f.steps, mstep{ref: "fchild"})
	return f
}

// publish serves every file and signs the parent.
func (f *refFixture) publish(t testing.TB, srv *server, version string) *refUpdate {
	t.Helper()
	u := &refUpdate{id: adu.UpdateID{Provider: "Contoso", Name: "Board", Version: version}, urls: map[string]string{}}
	for _, fl := range append(append([]mfile(nil), f.files...), f.childFiles...) {
		data := fl.data
		if fl.id == "fchild" {
			data = f.childFile // may differ from the parent's entry
		}
		u.urls[fl.id] = srv.put(version+"/"+fl.name, data)
	}
	u.manifest = manifestJSON("Board", version, f.steps, f.files)
	var err error
	if u.sig, err = getKeys(t).signer.Sign([]byte(u.manifest)); err != nil {
		t.Fatal(err)
	}
	return u
}

// setChild replaces the child manifest (and the parent's entry for it).
func (f *refFixture) setChild(manifest string) {
	f.child = manifest
	f.childFile = childFile(manifest)
	for i := range f.files {
		if f.files[i].id == "fchild" {
			f.files[i].data = f.childFile
		}
	}
}

// newTwoClassDevice is newDevice with a second slot class, app (256 KiB NAND per bank),
// bank A's app slot holding appFactory.
func newTwoClassDevice(t testing.TB, factory, appFactory []byte) *device {
	return newBoardDevice(t, board.Options{Factory: factory, Classes: []board.Class{{Name: "app", Size: 256 << 10, Factory: appFactory}}})
}

// stepResults returns lastInstallResult.stepResults of an agent report.
func stepResults(ag map[string]any) map[string]any {
	lir, _ := ag["lastInstallResult"].(map[string]any)
	sr, _ := lir["stepResults"].(map[string]any)
	return sr
}

func resultCodeOf(v any) float64 {
	m, _ := v.(map[string]any)
	f, _ := m["resultCode"].(float64)
	return f
}

// An inline step and a reference step whose child update writes another slot class: both
// go into bank B, one bootloader transition, success after the reboot with one step result
// per step of the parent (the child's steps are not reported on their own), as the Linux
// agent reports them. The same update deployed again is already installed (603).
func TestReferenceStepInstalls(t *testing.T) {
	v1, app1 := payload(1, 64<<10), payload(3, 32<<10)
	d := newTwoClassDevice(t, v1, app1)
	srv := newServer(t)
	f := newRefFixture(t, "2.0", true)
	u := f.publish(t, srv, "2.0")
	h := newHub(t)
	h.full(u.service("wf-ref", ""))
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("install: %v\n%v", err, h.all())
	}
	if st := d.bootState(); st.Pending != "B" {
		t.Fatalf("bootloader after install: %+v", st)
	}
	if !d.slotHolds("B", f.rootfsRaw) || !slotHoldsClass(d, "B", "app", f.appRaw) || !d.slotHolds("A", v1) || !slotHoldsClass(d, "A", "app", app1) {
		t.Fatal("after install, B must hold the new rootfs and app, A the old ones")
	}
	rec := d.agent(nil).Record()
	if rec.Version != StateVersion || rec.Deployment == nil || len(rec.Deployment.Steps) != 2 {
		t.Fatalf("journal %+v", rec)
	}
	st0, st1 := rec.Deployment.Steps[0], rec.Deployment.Steps[1]
	if st0.Step != 0 || st0.Child != nil || st1.Step != 1 || st1.Child == nil || st1.Child.ManifestFileID != "fchild" ||
		st1.Child.Step != 0 || st1.Child.UpdateID.Name != "Board-App" || st1.Class != "app" || st1.Criteria != "app-2.0" {
		t.Errorf("journal steps %+v %+v", st0, st1)
	}
	if ag := lastState(h); stateOf(ag) != 6 || wfID(ag) != "wf-ref" {
		t.Errorf("before the reboot: %v", ag)
	}

	d.reset()
	h.full(u.service("wf-ref", ""))
	if err := runAgent(t, d.agent(nil), h, func() bool {
		ag := lastState(h)
		return stateOf(ag) == 0 && wfID(ag) == "wf-ref" && ag["installedUpdateId"] == u.id.InstalledUpdateID()
	}); err != nil {
		t.Fatal(err)
	}
	ag := lastState(h)
	lir, _ := ag["lastInstallResult"].(map[string]any)
	sr := stepResults(ag)
	if lir["resultCode"] != float64(700) || len(sr) != 2 || resultCodeOf(sr["step_0"]) != 700 || resultCodeOf(sr["step_1"]) != 700 {
		t.Errorf("success report %v", ag)
	}
	rec = d.agent(nil).Record()
	if b := rec.Banks["B"]; b == nil || b.Criteria["rootfs"] != "2.0" || b.Criteria["app"] != "app-2.0" || b.Versions["app"] != "2.0" {
		t.Errorf("bank B %+v", rec.Banks["B"])
	}

	// Deployed again (another workflow): every step of the parent and of the child is what
	// bank B holds, so nothing is downloaded but the child manifest.
	var payloads atomic.Int64
	srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, ".aduimg") {
			payloads.Add(1)
		}
		return false
	}
	h.patch(u.service("wf-again", ""))
	if err := runAgent(t, d.agent(nil), h, func() bool {
		ag := lastState(h)
		return stateOf(ag) == 0 && wfID(ag) == "wf-again"
	}); err != nil {
		t.Fatal(err)
	}
	sr = stepResults(lastState(h))
	if payloads.Load() != 0 || len(sr) != 2 || resultCodeOf(sr["step_0"]) != 603 || resultCodeOf(sr["step_1"]) != 603 {
		t.Errorf("already installed: %d payload requests, step results %v", payloads.Load(), sr)
	}
}

func slotHoldsClass(d *device, bank, class string, data []byte) bool {
	return bytes.Equal(d.Content(bank, class, len(data)), data)
}

// The device of the other tests (one slot class): a parent whose only step is a reference
// step, and the wire form of its reports byte for byte where it matters.
func TestReferenceStepOnlyStep(t *testing.T) {
	v1 := payload(1, 64<<10)
	d := newDevice(t, v1)
	srv := newServer(t)
	raw := payload(30, 100<<10)
	img := makeImage(t, raw, "3.0", nil)
	childFiles := []mfile{{id: "fimg", name: "rootfs-3.0.aduimg", data: img}}
	child := manifestJSON("Board-Rootfs", "3.0", []mstep{{file: "fimg", class: "rootfs", criteria: "3.0"}}, childFiles)
	cf := childFile(child)
	files := []mfile{{id: "fchild", name: "contoso.board-rootfs.3.0.updatemanifest.json", data: cf}}
	u := &refUpdate{id: adu.UpdateID{Provider: "Contoso", Name: "Board", Version: "3.0"},
		manifest: manifestJSON("Board", "3.0", []mstep{{ref: "fchild"}}, files),
		urls:     map[string]string{"fchild": srv.put("child.json", cf), "fimg": srv.put("rootfs-3.0.aduimg", img)}}
	u.sig, _ = getKeys(t).signer.Sign([]byte(u.manifest))
	h := newHub(t)
	h.full(u.service("wf-only", ""))
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("install: %v\n%v", err, h.all())
	}
	d.reset()
	h.full(u.service("wf-only", ""))
	if err := runAgent(t, d.agent(nil), h, succeeded(h, "wf-only", &update{id: u.id})); err != nil {
		t.Fatal(err)
	}
	all := h.all()
	want := `{"deviceUpdate":{"__t":"c","agent":{"state":0,"workflow":{"action":3,"id":"wf-only"},"installedUpdateId":"{\"provider\":\"Contoso\",\"name\":\"Board\",\"version\":\"3.0\"}","lastInstallResult":{"resultCode":700,"extendedResultCode":0,"resultDetails":"","stepResults":{"step_0":{"resultCode":700,"extendedResultCode":0,"resultDetails":""}}}}}}`
	if all[len(all)-1] != want {
		t.Errorf("success report\n got %s\nwant %s", all[len(all)-1], want)
	}
	if !d.slotHolds("B", raw) || !d.slotHolds("A", v1) || d.bootState().Primary != "B" {
		t.Error("not installed into B")
	}
}

// A reference step that cannot be prepared or installed fails the deployment like an
// inline step: Failed then Idle with the code, nothing pending, bank A untouched, and the
// update's files fetched only as far as the failure.
func TestReferenceStepFailures(t *testing.T) {
	v1, app1 := payload(1, 64<<10), payload(3, 32<<10)
	otherApp := makeImage(t, payload(22, 150<<10), "2.0", func(o *image.SignOptions) { o.SlotClass = "app" })
	type fixMod func(f *refFixture)
	type urlMod func(f *refFixture, u *refUpdate, srv *server)
	cases := []struct {
		name     string
		fix      fixMod // before the parent is signed
		urls     urlMod // after
		erc      adu.ExtendedResultCode
		payloads bool // an image may be fetched
		detail   string
	}{
		{"child manifest hash differs from the parent's entry", nil, func(f *refFixture, u *refUpdate, srv *server) {
			// Same size, other content (a manifest for another app).
			u.urls["fchild"] = srv.put("tampered.json", bytes.Replace(f.childFile, []byte("Board-App"), []byte("Board-Xpp"), 1))
		}, ERCFileHash, false, "child manifest"},
		{"child manifest longer than the parent's entry", nil, func(f *refFixture, u *refUpdate, srv *server) {
			u.urls["fchild"] = srv.put("long.json", append(bytes.Clone(f.childFile), ' ', ' '))
		}, ERCDownloadTooLong, false, "child manifest"},
		{"child manifest not in fileUrls", nil, func(f *refFixture, u *refUpdate, srv *server) {
			delete(u.urls, "fchild")
		}, ERCMissingFile, false, "child manifest"},
		{"child manifest gone (404)", nil, func(f *refFixture, u *refUpdate, srv *server) {
			u.urls["fchild"] += ".gone"
		}, downloadERC(404), false, "child manifest"},
		{"child payload not in fileUrls", nil, func(f *refFixture, u *refUpdate, srv *server) {
			delete(u.urls, "fapp")
		}, ERCMissingFile, false, "fapp"},
		{"child image hash differs from the child's entry", nil, func(f *refFixture, u *refUpdate, srv *server) {
			u.urls["fapp"] = srv.put("other-app.aduimg", otherApp) // a good image, not the one the child names
		}, ERCFileHash, true, "step 1 (child Contoso/Board-App 2.0 step 0)"},
		{"child not a manifest file", func(f *refFixture) {
			f.childFile = []byte(`{"manifest":"x"}`)
			f.files[1].data = f.childFile
		}, nil, adu.ERCManifestValidationFailed, false, "child manifest"},
		{"child with its own reference step", func(f *refFixture) {
			grand := childFile(manifestJSON("Board-Grand", "1.0", []mstep{{file: "fapp", class: "app", criteria: "x"}}, f.childFiles))
			f.childFiles = append(f.childFiles, mfile{id: "fgrand", name: "grand.json", data: grand})
			f.setChild(manifestJSON("Board-App", "2.0", []mstep{{file: "fapp", class: "app", criteria: "app-2.0"}, {ref: "fgrand"}}, f.childFiles))
		}, nil, ERCUnsupportedStep, false, "cannot reference others"},
		{"child step with another handler", func(f *refFixture) {
			f.setChild(manifestJSON("Board-App", "2.0", []mstep{{file: "fapp", class: "app", criteria: "app-2.0", handler: "microsoft/swupdate:2"}}, f.childFiles))
		}, nil, ERCUnsupportedHandler, false, "step 1 (child Contoso/Board-App 2.0 step 0)"},
		{"child writes the class of an inline step", func(f *refFixture) {
			f.setChild(manifestJSON("Board-App", "2.0", []mstep{{file: "fapp", class: "rootfs", criteria: "app-2.0"}}, f.childFiles))
		}, nil, adu.ERCManifestValidationFailed, false, "two steps write slot class rootfs"},
		{"child manifest entry over 1 MiB", func(f *refFixture) {
			f.files[1].size = maxManifestFile + 1
		}, nil, adu.ERCManifestValidationFailed, false, "at most"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newTwoClassDevice(t, v1, app1)
			srv := newServer(t)
			f := newRefFixture(t, "2.0", true)
			if tc.fix != nil {
				tc.fix(f)
			}
			u := f.publish(t, srv, "2.0")
			if tc.urls != nil {
				tc.urls(f, u, srv)
			}
			var payloads atomic.Int64
			srv.Hook = func(w http.ResponseWriter, r *http.Request) bool {
				if strings.HasSuffix(r.URL.Path, ".aduimg") {
					payloads.Add(1)
				}
				return false
			}
			h := newHub(t)
			h.full(u.service("wf", ""))
			if err := runAgent(t, d.agent(nil), h, failedThenIdle(h, "wf")); err != nil {
				t.Fatalf("%v; reports %v", err, h.all())
			}
			last := lastState(h)
			lir, _ := last["lastInstallResult"].(map[string]any)
			erc := adu.ExtendedResultCode(uint32(int32(lir["extendedResultCode"].(float64))))
			if lir["resultCode"] != float64(0) || erc != tc.erc {
				t.Errorf("result %v (erc %s), want %s", lir, erc, tc.erc)
			}
			if !strings.Contains(fmt.Sprint(lir["resultDetails"]), tc.detail) {
				t.Errorf("details %q do not name %q", lir["resultDetails"], tc.detail)
			}
			if sr := stepResults(last); len(sr) != 2 || resultCodeOf(sr["step_1"]) != 0 {
				t.Errorf("step results %v", sr)
			}
			if !tc.payloads && payloads.Load() != 0 {
				t.Errorf("%d image requests for a deployment refused at preparation", payloads.Load())
			}
			if st := d.bootState(); st.Pending != "" || st.Primary != "A" {
				t.Errorf("bootloader %+v", st)
			}
			if !d.slotHolds("A", v1) || !slotHoldsClass(d, "A", "app", app1) {
				t.Error("bank A changed")
			}
			rec := d.agent(nil).Record()
			if rec.Deployment != nil || rec.Last == nil || rec.Last.Succeeded || len(rec.Last.Steps) != 2 {
				t.Errorf("record %+v", rec)
			}
		})
	}
}

// importUpdate imports the update Contoso/<name> <version> with the hub stand-in's Service:
// files (name → content) written to a folder, steps those of the import manifest;
// deployable false makes a child-only update.
func importUpdate(t *testing.T, svc *hub.Service, name, version string, deployable bool, steps []manifestgen.StepSpec, files map[string][]byte) *hub.Update {
	t.Helper()
	dir := t.TempDir()
	spec := manifestgen.Spec{UpdateID: manifestgen.UpdateID{Provider: "Contoso", Name: name, Version: version}, IsDeployable: &deployable,
		Compatibility: []manifestgen.Compatibility{{{Name: "manufacturer", Value: "Contoso"}, {Name: "model", Value: "Board"}}}, Steps: steps}
	paths := map[string]string{}
	for fn, data := range files {
		p := filepath.Join(dir, fn)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		paths[fn] = p
		spec.Files = append(spec.Files, manifestgen.FileSpec{Path: p})
	}
	m, _, err := manifestgen.Build(context.Background(), spec, manifestgen.WithCreated(time.Unix(1.7e9, 0)))
	if err != nil {
		t.Fatal(err)
	}
	im, err := manifestgen.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	u, err := svc.Import(im, paths)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func imageStep(file, class, criteria string) manifestgen.StepSpec {
	return manifestgen.StepSpec{Handler: HandlerImage, Files: []string{file}, Properties: manifestgen.Object{
		{Name: "installedCriteria", Value: json.RawMessage(`"` + criteria + `"`)},
		{Name: "slotClass", Value: json.RawMessage(`"` + class + `"`)}}}
}

// The hub stand-in's Service imports a child update and a parent that references it, and
// deploys the parent over MQTT: the detached manifest file and the fileUrls it makes are
// what the agent needs, and the deployment ends Succeeded in the Service.
func TestReferenceStepThroughHubService(t *testing.T) {
	v1, app1 := payload(1, 64<<10), payload(3, 32<<10)
	d := newTwoClassDevice(t, v1, app1)
	e := newHub(t)
	var cur atomic.Pointer[hub.Service]
	files := httptest.NewServer(http.StripPrefix("/files", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur.Load().FileHandler().ServeHTTP(w, r)
	})))
	t.Cleanup(files.Close)
	svc, err := hub.NewService(e.h, getKeys(t).signer, hub.ServiceOptions{DataDir: t.TempDir(), FileBaseURL: files.URL + "/files"})
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(svc)
	t.Cleanup(func() { svc.Close() })

	f := newRefFixture(t, "2.0", true)
	child := importUpdate(t, svc, "Board-App", "2.0", false, []manifestgen.StepSpec{imageStep("app-2.0.aduimg", "app", "2.0")},
		map[string][]byte{"app-2.0.aduimg": f.appImg})
	parent := importUpdate(t, svc, "Board", "2.0", true, []manifestgen.StepSpec{imageStep("rootfs-2.0.aduimg", "rootfs", "2.0"),
		{UpdateID: &manifestgen.UpdateID{Provider: "Contoso", Name: "Board-App", Version: "2.0"}}},
		map[string][]byte{"rootfs-2.0.aduimg": f.rootfsImg})
	if len(parent.References) != 1 || parent.References[0] != child.UpdateID {
		t.Fatalf("references %v", parent.References)
	}

	e.connect()
	stop, done := runBackground(d.agent(nil), e)
	waitFor(t, "startup report", func() bool { ag := e.agentReported(); return ag != nil && ag["deviceProperties"] != nil })
	dep, err := svc.Deploy(parent.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitDone(t, done); !errors.Is(err, ErrRebooting) {
		t.Fatalf("install: %v\n%v", err, e.all())
	}
	stop()
	if !d.slotHolds("B", f.rootfsRaw) || !slotHoldsClass(d, "B", "app", f.appRaw) || d.bootState().Pending != "B" {
		t.Fatal("bank B not written and pending")
	}

	d.reset()
	e.connect()
	stop, _ = runBackground(d.agent(nil), e)
	defer stop()
	waitFor(t, "success", func() bool {
		ag := e.agentReported()
		return stateOf(ag) == 0 && wfID(ag) == dep.ID && ag["installedUpdateId"] == parent.UpdateID.InstalledUpdateID()
	})
	if sr := stepResults(e.agentReported()); len(sr) != 2 || resultCodeOf(sr["step_0"]) != 700 || resultCodeOf(sr["step_1"]) != 700 {
		t.Errorf("step results %v", sr)
	}
	waitFor(t, "deployment succeeded in the service", func() bool {
		for _, ds := range svc.Deployments() {
			if ds.ID == dep.ID {
				return ds.Counts.Succeeded == 1
			}
		}
		return false
	})
}

// A version-1 journal (one StepState per manifest step, no step index) is read as such.
func TestJournalVersion1(t *testing.T) {
	d := newTwoClassDevice(t, payload(1, 64<<10), payload(3, 32<<10))
	j, err := journal.Open(stateDir, journal.WithFS(d.FS()), journal.WithName(RecordName))
	if err != nil {
		t.Fatal(err)
	}
	v1 := `{"version":1,"deployment":{"workflow_id":"wf-old","update_id":{"provider":"Contoso","name":"Board","version":"2.0"},"bank":"B","from":"A","phase":"install",` +
		`"steps":[{"class":"rootfs","slot":"rootfs-b","source":{"url":"http://x/1","size":10},"progress":{"file_offset":0,"stats":{},"downloaded":0}},` +
		`{"class":"app","slot":"app-b","source":{"url":"http://x/2","size":10},"progress":{"file_offset":0,"stats":{},"downloaded":0}}],"started":"2026-11-22T10:00:00Z"}}`
	if err := j.Save(json.RawMessage(v1)); err != nil {
		t.Fatal(err)
	}
	rec := d.agent(nil).Record()
	if rec.Version != StateVersion || rec.Deployment == nil || rec.Deployment.Steps[0].Step != 0 || rec.Deployment.Steps[1].Step != 1 ||
		rec.Deployment.manifestSteps() != 2 {
		t.Errorf("migrated record %+v", rec.Deployment)
	}
}

// A detached (mini) manifest whose full manifest has a reference step: the full manifest
// and the child manifest are both fetched and checked against the entry that names them.
func TestDetachedManifestWithReferenceStep(t *testing.T) {
	d := newTwoClassDevice(t, payload(1, 64<<10), payload(3, 32<<10))
	srv := newServer(t)
	f := newRefFixture(t, "2.0", true)
	u := f.publish(t, srv, "2.0")
	full := childFile(u.manifest) // the detached manifest file has the same form as a child's
	sum := sha256.Sum256(full)
	mini, _ := json.Marshal(map[string]any{"manifestVersion": "5", "updateId": u.id, "detachedManifestFileId": "fdet",
		"files": map[string]any{"fdet": map[string]any{"fileName": "contoso.board.2.0.updatemanifest.json", "sizeInBytes": len(full),
			"hashes": map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}}}})
	u.manifest = string(mini)
	u.sig, _ = getKeys(t).signer.Sign(mini)
	u.urls["fdet"] = srv.put("detached.json", full)
	h := newHub(t)
	h.full(u.service("wf-det", ""))
	if err := runAgent(t, d.agent(nil), h, nil); !errors.Is(err, ErrRebooting) {
		t.Fatalf("install: %v\n%v", err, h.all())
	}
	if !d.slotHolds("B", f.rootfsRaw) || !slotHoldsClass(d, "B", "app", f.appRaw) || d.bootState().Pending != "B" {
		t.Fatal("bank B not written and pending")
	}
}
