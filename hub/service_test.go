package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/iothub/iothubtest"
	"github.com/aduflash/aduflash/manifestgen"
)

// svcEnv is the local stack (Local) of a test on one data folder.
type svcEnv struct {
	dir    string
	url    string // the HTTP server's base URL
	hub    *Hub
	signer *Signer
	svc    *Service
	stack  *Stack
}

func startEnv(t *testing.T, dir string) *svcEnv {
	t.Helper()
	return startEnvLogged(t, dir, nil)
}

// startEnvLogged is startEnv with the Hub's and the Service's logs going to log.
func startEnvLogged(t *testing.T, dir string, log *slog.Logger) *svcEnv {
	t.Helper()
	st, err := Local(LocalOptions{DataDir: dir, SignerBits: 2048, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e := &svcEnv{dir: dir, url: st.HTTPURL, hub: st.Hub, signer: st.Signer, svc: st.Service, stack: st}
	t.Cleanup(e.stop)
	return e
}

func (e *svcEnv) stop() {
	if e.stack != nil {
		_ = e.stack.Close()
		e.stack = nil
	}
}

var toaster = manifestgen.Compatibility{{Name: "manufacturer", Value: "contoso"}, {Name: "model", Value: "toaster"}}

// buildImport writes payload files and builds their import manifest with manifestgen.
func buildImport(t *testing.T, version string, extra func(*manifestgen.Spec), payloads ...[]byte) ([]byte, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	spec := manifestgen.Spec{
		UpdateID:      manifestgen.UpdateID{Provider: "Contoso", Name: "Toaster", Version: version},
		Compatibility: []manifestgen.Compatibility{toaster},
		Steps: []manifestgen.StepSpec{{Handler: "aduflash/image:1", Properties: manifestgen.Object{
			{Name: "installedCriteria", Value: json.RawMessage(`"` + version + `"`)},
			{Name: "slotClass", Value: json.RawMessage(`"rootfs"`)},
		}}},
	}
	files := map[string]string{}
	for i, p := range payloads {
		name := fmt.Sprintf("fw-%s-%d.bin", version, i)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, p, 0o600); err != nil {
			t.Fatal(err)
		}
		files[name] = path
		spec.Files = append(spec.Files, manifestgen.FileSpec{Path: path})
	}
	if extra != nil {
		extra(&spec)
	}
	m, _, err := manifestgen.Build(context.Background(), spec, manifestgen.WithCreated(time.Unix(1.7e9, 0)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := manifestgen.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b, files
}

func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func get(t *testing.T, url string, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

func TestImport(t *testing.T) {
	e := startEnv(t, t.TempDir())
	p1, p2 := payload(100<<10, 1), payload(3000, 9)
	im, files := buildImport(t, "1.0", nil, p1, p2)
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}

	// The update manifest: real shape, parses, verifies with the signer's root.
	m, v, err := adu.VerifyManifest([]byte(u.Manifest), u.Signature, adu.VerifyOptions{Roots: []adu.RootKey{e.signer.RootKey()}, NoBuiltinRoots: true})
	if err != nil {
		t.Fatal(err)
	}
	if v == nil || m.Version != 5 || m.ManifestVersion != "5" || m.UpdateID != (adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "1.0"}) {
		t.Fatalf("manifest %+v", m)
	}
	if _, err := adu.Verify([]byte(u.Manifest), u.Signature, adu.VerifyOptions{}); err == nil {
		t.Fatal("verified without trusting the local root")
	}
	real := memberNames(t, readADUTestdata(t, "manifest_v4.json"))
	if got := memberNames(t, []byte(u.Manifest)); !slices.Equal(got, real) {
		t.Fatalf("member order %v, real manifests have %v", got, real)
	}
	idRE := regexp.MustCompile(`^f[0-9a-f]{16}$`)
	if len(m.Files) != 2 || len(m.Steps) != 1 || len(m.Steps[0].Files) != 2 {
		t.Fatalf("files %v steps %+v", m.Files, m.Steps)
	}
	want := map[string][]byte{"fw-1.0-0.bin": p1, "fw-1.0-1.bin": p2}
	for i, id := range m.Steps[0].Files {
		f := m.Files[id]
		sum := sha256.Sum256(want[f.FileName])
		if !idRE.MatchString(id) || f.SizeInBytes != int64(len(want[f.FileName])) || !bytes.Equal(f.Hashes["sha256"], sum[:]) ||
			f.FileName != fmt.Sprintf("fw-1.0-%d.bin", i) {
			t.Fatalf("file %s: %+v", id, f)
		}
	}
	if string(m.Steps[0].HandlerProperties) != `{"installedCriteria":"1.0","slotClass":"rootfs"}` || m.Steps[0].Handler != "aduflash/image:1" {
		t.Fatalf("step %+v %s", m.Steps[0], m.Steps[0].HandlerProperties)
	}
	if !regexp.MustCompile(`^\{"manifestVersion":"5","updateId":\{"provider":"Contoso","name":"Toaster","version":"1.0"\},` +
		`"compatibility":\[\{"manufacturer":"contoso","model":"toaster"\}\],"instructions":\{"steps":\[\{"handler":"aduflash/image:1",` +
		`"files":\["f[0-9a-f]{16}","f[0-9a-f]{16}"\],"handlerProperties":\{"installedCriteria":"1.0","slotClass":"rootfs"\}\}\]\},` +
		`"files":\{"f[0-9a-f]{16}":\{"fileName":"fw-1.0-0.bin","sizeInBytes":102400,"hashes":\{"sha256":"[A-Za-z0-9+/]{43}="\}\},` +
		`"f[0-9a-f]{16}":\{"fileName":"fw-1.0-1.bin","sizeInBytes":3000,"hashes":\{"sha256":"[A-Za-z0-9+/]{43}="\}\}\},` +
		`"createdDateTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,7})?Z"\}$`).MatchString(u.Manifest) {
		t.Fatalf("manifest text:\n%s", u.Manifest)
	}

	// The file server: whole files, a Range (206), unknown ids and names 404.
	for id, f := range m.Files {
		url := e.svc.FileURL(e.svc.opts.FileBaseURL, id)
		code, body, hdr := get(t, url)
		if code != 200 || !bytes.Equal(body, want[f.FileName]) || hdr.Get("Accept-Ranges") != "bytes" {
			t.Fatalf("GET %s: %d, %d bytes", url, code, len(body))
		}
		code, body, hdr = get(t, url, "Range", "bytes=10-19")
		if code != http.StatusPartialContent || !bytes.Equal(body, want[f.FileName][10:20]) ||
			hdr.Get("Content-Range") != fmt.Sprintf("bytes 10-19/%d", f.SizeInBytes) {
			t.Fatalf("Range GET %s: %d %q", url, code, hdr.Get("Content-Range"))
		}
		// If-Range with the ETag resumes; a stale validator gets the whole file.
		if code, body, _ = get(t, url, "Range", "bytes=5-", "If-Range", hdr.Get("ETag")); code != 206 || !bytes.Equal(body, want[f.FileName][5:]) {
			t.Fatalf("If-Range: %d", code)
		}
		if code, _, _ = get(t, url, "Range", "bytes=5-", "If-Range", `"stale"`); code != 200 {
			t.Fatalf("stale If-Range: %d", code)
		}
		if code, _, _ = get(t, e.url+"/files/"+id+"/other.bin"); code != 404 {
			t.Fatalf("wrong name: %d", code)
		}
	}
	for _, p := range []string{"/files/f0000000000000000/fw-1.0-0.bin", "/files/", "/files/x"} {
		if code, _, _ := get(t, e.url+p); code != 404 {
			t.Fatalf("GET %s: %d", p, code)
		}
	}
	if e.svc.FileURL("http://x", "nope") != "" {
		t.Fatal("FileURL of an unknown id")
	}

	// Refusals.
	if _, err := e.svc.Import(im, files); !errors.Is(err, ErrUpdateExists) {
		t.Fatalf("duplicate: %v", err)
	}
	im2, files2 := buildImport(t, "2.0", nil, p1, p2)
	tampered := map[string]string{}
	for k, v := range files2 {
		tampered[k] = v
	}
	os.WriteFile(files2["fw-2.0-1.bin"], payload(3000, 10), 0o600) // same size, other bytes
	if _, err := e.svc.Import(im2, files2); !errors.Is(err, ErrImportFiles) {
		t.Fatalf("hash mismatch: %v", err)
	}
	os.WriteFile(files2["fw-2.0-1.bin"], p2[:100], 0o600)
	if _, err := e.svc.Import(im2, files2); !errors.Is(err, ErrImportFiles) {
		t.Fatalf("size mismatch: %v", err)
	}
	delete(tampered, "fw-2.0-1.bin")
	if _, err := e.svc.Import(im2, tampered); !errors.Is(err, ErrImportFiles) {
		t.Fatalf("missing file: %v", err)
	}
	tampered["fw-2.0-1.bin"], tampered["extra.bin"] = files["fw-1.0-1.bin"], files["fw-1.0-1.bin"]
	if _, err := e.svc.Import(im2, tampered); !errors.Is(err, ErrImportFiles) {
		t.Fatalf("extra file: %v", err)
	}
	if _, err := e.svc.Import(bytes.Replace(im2, []byte(`"5.0"`), []byte(`"4.0"`), 1), files2); !errors.Is(err, manifestgen.ErrInvalid) {
		t.Fatalf("invalid import manifest: %v", err)
	}
	if got := len(e.svc.Updates()); got != 1 {
		t.Fatalf("%d updates after refusals", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "files")); len(ents) != 2 {
		t.Fatalf("files left by refused imports: %d", len(ents))
	}
}

// A child update (isDeployable false) and a parent with a reference step:
// the parent gets a detached manifest file like the service's, and its
// deployment's fileUrls hold the child's files too.
func TestImportReferenceStep(t *testing.T) {
	e := startEnv(t, t.TempDir())
	no := false
	leafIM, leafFiles := buildImport(t, "7.0.2", func(s *manifestgen.Spec) {
		s.UpdateID.Name = "Toaster-Leaf"
		s.IsDeployable = &no
	}, payload(500, 3))
	leaf, err := e.svc.Import(leafIM, leafFiles)
	if err != nil {
		t.Fatal(err)
	}
	parentIM, parentFiles := buildImport(t, "7.0.1", func(s *manifestgen.Spec) {
		s.Steps = append([]manifestgen.StepSpec{{UpdateID: &manifestgen.UpdateID{Provider: "Contoso", Name: "Toaster-Leaf", Version: "7.0.2"}}}, s.Steps...)
		s.Steps[1].Files = []string{"fw-7.0.1-0.bin"}
	}, payload(700, 4))
	parent, err := e.svc.Import(parentIM, parentFiles)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := adu.VerifyManifest([]byte(parent.Manifest), parent.Signature, adu.VerifyOptions{Roots: []adu.RootKey{e.signer.RootKey()}, NoBuiltinRoots: true})
	if err != nil {
		t.Fatal(err)
	}
	if m.Steps[0].Type != adu.StepReference || len(parent.References) != 1 {
		t.Fatalf("steps %+v", m.Steps)
	}
	df := m.Files[m.Steps[0].DetachedManifestFileID]
	if df.FileName != "contoso.toaster-leaf.7.0.2.updatemanifest5.json" {
		t.Fatalf("detached file %+v", df)
	}
	code, body, _ := get(t, e.svc.FileURL(e.svc.opts.FileBaseURL, m.Steps[0].DetachedManifestFileID))
	sum := sha256.Sum256(body)
	if code != 200 || int64(len(body)) != df.SizeInBytes || !bytes.Equal(sum[:], df.Hashes["sha256"]) {
		t.Fatalf("detached manifest: %d", code)
	}
	child, err := adu.ParseDetachedManifestFile(body)
	if err != nil || string(child) != leaf.Manifest {
		t.Fatalf("detached content %s: %v", body, err)
	}

	if _, err := e.svc.Deploy(leaf.UpdateID, nil); !errors.Is(err, ErrNotDeployable) {
		t.Fatalf("deploy of a child: %v", err)
	}
	_ = e.hub.RegisterDevice("d1", key1)
	if _, err := e.hub.applyReported("d1", []byte(`{"deviceUpdate":{"__t":"c","agent":{"deviceProperties":{"manufacturer":"contoso","model":"toaster"}}}}`)); err != nil {
		t.Fatal(err)
	}
	d, err := e.svc.Deploy(parent.UpdateID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.FileURLs[leaf.Files[0].ID]; !ok || len(d.FileURLs) != 3 {
		t.Fatalf("fileUrls %v", d.FileURLs)
	}
}

// Related files (delta sources) and the download handler pass into the update manifest as
// the v5 relatedFiles map, each with its own file id, served like the payloads.
func TestImportRelatedFiles(t *testing.T) {
	e := startEnv(t, t.TempDir())
	rel := filepath.Join(t.TempDir(), "delta-0.9-1.0.bin")
	if err := os.WriteFile(rel, payload(300, 5), 0o600); err != nil {
		t.Fatal(err)
	}
	im, files := buildImport(t, "1.0", func(s *manifestgen.Spec) {
		s.Files[0].DownloadHandler = "microsoft/delta:1"
		s.Files[0].Related = []manifestgen.RelatedFileSpec{{Path: rel, Properties: manifestgen.Object{
			{Name: "microsoft.sourceFileHashAlgorithm", Value: json.RawMessage(`"sha256"`)},
			{Name: "microsoft.sourceFileHash", Value: json.RawMessage(`"YWJj"`)},
		}}}
	}, payload(1000, 1))
	files["delta-0.9-1.0.bin"] = rel
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	m, err := adu.ParseManifest([]byte(u.Manifest))
	if err != nil {
		t.Fatal(err)
	}
	f := m.Files[m.Steps[0].Files[0]]
	if len(m.Files) != 1 || f.DownloadHandler != "microsoft/delta:1" || len(f.RelatedFiles) != 1 {
		t.Fatalf("%+v", f)
	}
	for id, r := range f.RelatedFiles {
		if r.FileName != "delta-0.9-1.0.bin" || r.SizeInBytes != 300 || r.Properties["microsoft.sourceFileHash"] != "YWJj" {
			t.Fatalf("%+v", r)
		}
		if code, body, _ := get(t, e.svc.FileURL(e.svc.opts.FileBaseURL, id)); code != 200 || len(body) != 300 {
			t.Fatalf("related file: %d", code)
		}
	}
}

// desiredService returns the device's desired deviceUpdate.service from the hub's twin.
func desiredService(t *testing.T, h *Hub, id string) map[string]any {
	t.Helper()
	tw, err := h.Twin(id)
	if err != nil {
		t.Fatal(err)
	}
	m := asMap(t, tw)
	du, _ := m["desired"].(map[string]any)["deviceUpdate"].(map[string]any)
	svc, _ := du["service"].(map[string]any)
	return svc
}

func report(t *testing.T, c *iothub.Client, agent string) {
	t.Helper()
	if _, err := c.UpdateReported(context.Background(), json.RawMessage(`{"deviceUpdate":{"__t":"c","agent":`+agent+`}}`)); err != nil {
		t.Fatal(err)
	}
}

func deviceStatus(t *testing.T, s *Service, dep, dev string) DeviceStatus {
	t.Helper()
	st, err := s.Status(dep)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range st.Results {
		if d.DeviceID == dev {
			return d
		}
	}
	t.Fatalf("%s not in %s", dev, dep)
	return DeviceStatus{}
}

func wantState(t *testing.T, s *Service, dep, dev string, want DeviceState) DeviceStatus {
	t.Helper()
	d := deviceStatus(t, s, dep, dev)
	if d.State != want {
		t.Fatalf("%s in %s: %s, want %s (%+v)", dev, dep, d.State, want, d)
	}
	return d
}

func TestDeployStatusCancelRetryRestart(t *testing.T) {
	dir := t.TempDir()
	e := startEnv(t, dir)
	im, files := buildImport(t, "1.0", nil, payload(4096, 1), payload(100, 2))
	u, err := e.svc.Import(im, files)
	if err != nil {
		t.Fatal(err)
	}
	uid := u.UpdateID
	installed := uid.InstalledUpdateID()
	old := adu.UpdateID{Provider: "Contoso", Name: "Toaster", Version: "0.9"}.InstalledUpdateID()

	for _, id := range []string{"a1", "b1", "other", "silent"} {
		if err := e.hub.RegisterDevice(id, key1); err != nil {
			t.Fatal(err)
		}
	}
	// a1 and b1 are real MQTT devices; "other" reports through the hub; "silent" never reports.
	a1 := iothubtest.Dial(t, cfgFor(e.hub, "a1", key1))
	b1 := iothubtest.Dial(t, cfgFor(e.hub, "b1", key1))
	iothubtest.NextDesired(t, a1)
	iothubtest.NextDesired(t, b1)
	props := func(ring, model string) string {
		return `{"deviceProperties":{"manufacturer":"contoso","model":"` + model + `","ring":"` + ring + `","contractModelId":"dtmi:azure:iot:deviceUpdateContractModel;2"},"compatPropertyNames":"manufacturer,model","state":0,"installedUpdateId":` + strconvQuote(old) + `}`
	}
	report(t, a1, props("a", "toaster"))
	report(t, b1, props("b", "toaster"))
	if _, err := e.hub.applyReported("other", []byte(`{"deviceUpdate":{"__t":"c","agent":`+props("a", "kettle")+`}}`)); err != nil {
		t.Fatal(err)
	}

	// Group selection.
	if _, err := e.svc.Deploy(uid, map[string]string{"ring": "zzz"}); !errors.Is(err, ErrNoMatchingDevices) {
		t.Fatalf("empty group: %v", err)
	}
	if _, err := e.svc.Deploy(adu.UpdateID{Provider: "x", Name: "y", Version: "1.0"}, nil); !errors.Is(err, ErrUnknownUpdate) {
		t.Fatalf("unknown update: %v", err)
	}
	dA, err := e.svc.Deploy(uid, map[string]string{"ring": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dA.Devices, []string{"a1"}) { // "other" is ring a but not compatible
		t.Fatalf("ring a targets %v", dA.Devices)
	}
	wantState(t, e.svc, dA.ID, "a1", DeviceInProgress)

	// The desired service as the device receives it.
	up := iothubtest.NextDesired(t, a1)
	des, err := adu.ParseDesired(up.Patch)
	if err != nil || des.Service == nil {
		t.Fatalf("%s: %v", up.Patch, err)
	}
	sv := des.Service
	if sv.Workflow == nil || sv.Workflow.Action != adu.ActionProcessDeployment || sv.Workflow.ID != dA.ID || sv.Workflow.RetryTimestamp != "" ||
		sv.UpdateManifest != u.Manifest || sv.UpdateManifestSignature != u.Signature {
		t.Fatalf("service %+v", sv)
	}
	wantURLs := map[string]string{}
	for _, f := range u.Files {
		wantURLs[f.ID] = e.svc.FileURL(e.svc.opts.FileBaseURL, f.ID)
	}
	if !reflect.DeepEqual(sv.FileURLs, wantURLs) || !reflect.DeepEqual(dA.FileURLs, wantURLs) {
		t.Fatalf("fileUrls %v, want %v", sv.FileURLs, wantURLs)
	}
	if _, _, err := adu.VerifyManifest([]byte(sv.UpdateManifest), sv.UpdateManifestSignature, adu.VerifyOptions{Roots: []adu.RootKey{e.signer.RootKey()}}); err != nil {
		t.Fatal(err)
	}
	for _, url := range sv.FileURLs {
		if code, _, _ := get(t, url); code != 200 {
			t.Fatalf("GET %s: %d", url, code)
		}
	}
	if s := desiredService(t, e.hub, "b1"); s != nil {
		t.Fatalf("b1 got a service: %v", s)
	}

	// a1: an ack and a stale idle report change nothing; 6 then 0 + installedUpdateId: Succeeded.
	if _, err := a1.UpdateReported(context.Background(), json.RawMessage(`{"deviceUpdate":{"__t":"c","service":{"ac":200,"av":2,"value":{}}}}`)); err != nil {
		t.Fatal(err)
	}
	report(t, a1, `{"state":0,"installedUpdateId":`+strconvQuote(old)+`}`)
	if d := wantState(t, e.svc, dA.ID, "a1", DeviceInProgress); d.Started {
		t.Fatal("started without state 6")
	}
	report(t, a1, `{"state":6,"workflow":{"action":3,"id":"`+dA.ID+`"},"lastInstallResult":{"resultCode":1,"extendedResultCode":0,"stepResults":null}}`)
	if d := wantState(t, e.svc, dA.ID, "a1", DeviceInProgress); !d.Started || d.AgentState == nil || *d.AgentState != 6 {
		t.Fatalf("%+v", d)
	}
	report(t, a1, `{"state":0,"workflow":{"action":3,"id":"`+dA.ID+`"},"installedUpdateId":`+strconvQuote(installed)+`,"lastInstallResult":{"resultCode":700,"extendedResultCode":0,"resultDetails":""}}`)
	if d := wantState(t, e.svc, dA.ID, "a1", DeviceSucceeded); d.ResultCode != 700 || d.InstalledUpdateID != installed {
		t.Fatalf("%+v", d)
	}
	if _, err := e.svc.Retry(dA.ID); !errors.Is(err, ErrNoFailedDevices) {
		t.Fatalf("retry without failures: %v", err)
	}

	// b1 (interface ;2 codes): 6, then 255 → Failed with its codes; Idle with the old id stays Failed.
	dB, err := e.svc.Deploy(uid, map[string]string{"ring": "b"})
	if err != nil || !slices.Equal(dB.Devices, []string{"b1"}) {
		t.Fatalf("ring b: %v %v", dB, err)
	}
	iothubtest.NextDesired(t, b1)
	report(t, b1, `{"state":6,"workflow":{"action":3,"id":"`+dB.ID+`"}}`)
	report(t, b1, `{"state":255,"workflow":{"action":3,"id":"`+dB.ID+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"30501028,A0000FFF","resultDetails":"InstallUpdate: installation failed."}}`)
	d := wantState(t, e.svc, dB.ID, "b1", DeviceFailed)
	if d.ResultCode != 0 || d.ExtendedResultCodes != "30501028,A0000FFF" || d.ResultDetails != "InstallUpdate: installation failed." {
		t.Fatalf("%+v", d)
	}
	report(t, b1, `{"state":0,"workflow":{"action":3,"id":"`+dB.ID+`"},"installedUpdateId":`+strconvQuote(old)+`,"lastInstallResult":{"resultCode":0,"extendedResultCodes":"00000001"}}`)
	if d := wantState(t, e.svc, dB.ID, "b1", DeviceFailed); d.ExtendedResultCodes != "30501028,A0000FFF" {
		t.Fatalf("codes replaced: %+v", d)
	}
	aVer := desiredVersion(t, e.hub, "a1")

	// Retry: only b1, same workflow id, a new RFC 3339 retryTimestamp.
	retried, err := e.svc.Retry(dB.ID)
	if err != nil || !slices.Equal(retried, []string{"b1"}) {
		t.Fatalf("retry: %v %v", retried, err)
	}
	up = iothubtest.NextDesired(t, b1)
	des, err = adu.ParseDesired(up.Patch)
	if err != nil || des.Service.Workflow.ID != dB.ID || des.Service.Workflow.Action != adu.ActionProcessDeployment || des.Service.UpdateManifest != u.Manifest {
		t.Fatalf("retry patch %s: %v", up.Patch, err)
	}
	ts1 := des.Service.Workflow.RetryTimestamp
	if _, err := time.Parse(time.RFC3339, ts1); err != nil {
		t.Fatalf("retryTimestamp %q: %v", ts1, err)
	}
	if desiredVersion(t, e.hub, "a1") != aVer {
		t.Fatal("retry touched a succeeded device")
	}
	wantState(t, e.svc, dB.ID, "b1", DeviceInProgress)
	// Interface ;1 codes this time; a report echoing another retryTimestamp is not this retry's.
	report(t, b1, `{"state":255,"workflow":{"action":3,"id":"`+dB.ID+`","retryTimestamp":"2000-01-01T00:00:00Z"}}`)
	wantState(t, e.svc, dB.ID, "b1", DeviceInProgress)
	report(t, b1, `{"state":6,"workflow":{"action":3,"id":"`+dB.ID+`","retryTimestamp":"`+ts1+`"}}`)
	report(t, b1, `{"state":255,"workflow":{"action":3,"id":"`+dB.ID+`","retryTimestamp":"`+ts1+`"},"lastInstallResult":{"resultCode":0,"extendedResultCode":`+fmt.Sprint(int32(-2144337919))+`,"resultDetails":""}}`)
	if d := wantState(t, e.svc, dB.ID, "b1", DeviceFailed); d.ExtendedResultCodes != "80300001" || d.RetryTimestamp != ts1 {
		t.Fatalf("%+v", d)
	}
	// Failed via Idle without installedUpdateId after state 6 (the Linux agent's restore path).
	if _, err := e.svc.Retry(dB.ID); err != nil {
		t.Fatal(err)
	}
	up = iothubtest.NextDesired(t, b1)
	des, _ = adu.ParseDesired(up.Patch)
	ts2 := des.Service.Workflow.RetryTimestamp
	if ts2 == ts1 || ts2 == "" {
		t.Fatalf("second retry timestamp %q after %q", ts2, ts1)
	}
	report(t, b1, `{"state":6,"workflow":{"action":3,"id":"`+dB.ID+`","retryTimestamp":"`+ts2+`"},"installedUpdateId":null}`)
	report(t, b1, `{"state":0,"workflow":{"action":3,"id":"`+dB.ID+`","retryTimestamp":"`+ts2+`"},"lastInstallResult":{"resultCode":0,"extendedResultCodes":"30100002"}}`)
	if d := wantState(t, e.svc, dB.ID, "b1", DeviceFailed); d.ExtendedResultCodes != "30100002" {
		t.Fatalf("%+v", d)
	}

	// A deployment to both: they leave their old deployments (superseded), then cancel.
	dAll, err := e.svc.Deploy(uid, nil)
	if err != nil || !slices.Equal(dAll.Devices, []string{"a1", "b1"}) {
		t.Fatalf("all: %v %v", dAll, err)
	}
	iothubtest.NextDesired(t, a1)
	iothubtest.NextDesired(t, b1)
	if d := wantState(t, e.svc, dB.ID, "b1", DeviceFailed); d.SupersededBy != dAll.ID {
		t.Fatalf("%+v", d)
	}
	if e.svc.CurrentDeployment("b1") != dAll.ID {
		t.Fatal("b1 does not follow the new deployment")
	}
	if _, err := e.svc.Retry(dB.ID); !errors.Is(err, ErrNoFailedDevices) {
		t.Fatalf("retry of a superseded device: %v", err)
	}
	if err := e.svc.Cancel(dAll.ID); err != nil {
		t.Fatal(err)
	}
	up = iothubtest.NextDesired(t, a1)
	p := asMap(t, up.Patch)
	svcPatch := p["deviceUpdate"].(map[string]any)["service"].(map[string]any)
	wf := svcPatch["workflow"].(map[string]any)
	if wf["action"] != float64(255) || wf["id"] != "nodeployment" {
		t.Fatalf("cancel patch %s", up.Patch)
	}
	for _, k := range []string{"updateManifest", "updateManifestSignature", "fileUrls"} {
		if v, ok := svcPatch[k]; !ok || v != nil {
			t.Fatalf("cancel patch: %s is %v: %s", k, v, up.Patch)
		}
	}
	des, err = adu.ParseDesired(up.Patch)
	if err != nil || !des.Service.IsCancel() {
		t.Fatalf("cancel parse: %v", err)
	}
	if s := desiredService(t, e.hub, "b1"); len(s) != 1 || s["workflow"].(map[string]any)["id"] != "nodeployment" || len(s["workflow"].(map[string]any)) != 2 {
		t.Fatalf("b1 desired after cancel: %v", s)
	}
	st, _ := e.svc.Status(dAll.ID)
	if !st.Cancelled || st.CancelledAt.IsZero() || st.Counts != (DeviceCounts{Cancelled: 2}) {
		t.Fatalf("%+v", st)
	}
	wantState(t, e.svc, dAll.ID, "a1", DeviceCancelled)
	if err := e.svc.Cancel(dAll.ID); !errors.Is(err, ErrDeploymentCancelled) {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := e.svc.Retry(dAll.ID); !errors.Is(err, ErrDeploymentCancelled) {
		t.Fatalf("retry cancelled: %v", err)
	}
	if _, err := e.svc.Status("nope"); !errors.Is(err, ErrUnknownDeployment) {
		t.Fatal(err)
	}
	// A report after the cancel changes nothing.
	report(t, a1, `{"state":0,"workflow":{"action":3,"id":"`+dAll.ID+`"},"installedUpdateId":`+strconvQuote(installed)+`}`)
	wantState(t, e.svc, dAll.ID, "a1", DeviceCancelled)

	// One more, left in progress across the restart.
	dLast, err := e.svc.Deploy(uid, map[string]string{"ring": "b"})
	if err != nil {
		t.Fatal(err)
	}
	iothubtest.NextDesired(t, b1)
	report(t, b1, `{"state":6,"workflow":{"action":3,"id":"`+dLast.ID+`"}}`)

	// Restart Service and Hub on the same folder.
	beforeDeps := e.svc.Deployments()
	beforeUpdates := e.svc.Updates()
	if len(beforeDeps) != 4 {
		t.Fatalf("%d deployments", len(beforeDeps))
	}
	rootBefore := e.signer.RootKey()
	a1.Close()
	b1.Close()
	e.stop()
	e2 := startEnv(t, dir)
	if !reflect.DeepEqual(e2.signer.RootKey(), rootBefore) {
		t.Fatal("signer not restored")
	}
	if rk, err := os.ReadFile(filepath.Join(dir, "signer", RootKeysJSONFile)); err != nil {
		t.Fatal(err)
	} else if keys, err := adu.ParseRootKeys(rk); err != nil || len(keys) != 1 || keys[0].KID != "ADU.local.R" {
		t.Fatalf("rootkeys.json: %v %v", keys, err)
	}
	afterDeps := e2.svc.Deployments()
	for i := range afterDeps {
		// Times come back in their stored (UTC, monotonic-free) form.
		if !jsonEqual(t, afterDeps[i], beforeDeps[i]) {
			t.Fatalf("deployment %d changed across restart:\n%+v\n%+v", i, beforeDeps[i], afterDeps[i])
		}
	}
	if !jsonEqual(t, e2.svc.Updates(), beforeUpdates) {
		t.Fatal("updates changed across restart")
	}
	u2, _ := e2.svc.Update(uid)
	for _, f := range u2.Files {
		url := e2.svc.FileURL(e2.svc.opts.FileBaseURL, f.ID)
		if code, _, _ := get(t, url, "Range", "bytes=0-9"); code != 206 {
			t.Fatalf("after restart GET %s: %d", url, code)
		}
	}
	if _, err := e2.svc.Import(im, files); !errors.Is(err, ErrUpdateExists) {
		t.Fatalf("duplicate after restart: %v", err)
	}
	b2 := iothubtest.Dial(t, cfgFor(e2.hub, "b1", key1))
	if u := iothubtest.NextDesired(t, b2); !u.Full {
		t.Fatal(u)
	}
	report(t, b2, `{"state":0,"workflow":{"action":3,"id":"`+dLast.ID+`"},"installedUpdateId":`+strconvQuote(installed)+`,"lastInstallResult":{"resultCode":700,"extendedResultCodes":"00000000"}}`)
	if d := wantState(t, e2.svc, dLast.ID, "b1", DeviceSucceeded); !d.Started {
		t.Fatalf("%+v", d)
	}
	if e2.svc.CurrentDeployment("a1") != "" {
		t.Fatal("a1 follows a cancelled deployment after restart")
	}
	if _, err := e2.svc.Retry(dB.ID); !errors.Is(err, ErrNoFailedDevices) {
		t.Fatalf("retry after restart: %v", err)
	}
}

func desiredVersion(t *testing.T, h *Hub, id string) float64 {
	t.Helper()
	tw, _ := h.Twin(id)
	return asMap(t, tw)["desired"].(map[string]any)["$version"].(float64)
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonEqual(t *testing.T, a, b any) bool {
	t.Helper()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

func TestReplacePatch(t *testing.T) {
	old := map[string]any{"workflow": map[string]any{"action": 3, "id": "w", "retryTimestamp": "t"}, "fileUrls": map[string]any{"a": "1"}, "rootKeyPackageUrl": "r"}
	nw := map[string]any{"workflow": map[string]any{"action": 3, "id": "w2"}, "fileUrls": map[string]any{"b": "2"}}
	got := replacePatch(old, nw)
	dst := map[string]any{}
	b, _ := json.Marshal(old)
	json.Unmarshal(b, &dst)
	pb, _ := json.Marshal(got)
	var p map[string]any
	json.Unmarshal(pb, &p)
	MergePatch(dst, p)
	if !jsonEqual(t, dst, nw) {
		t.Fatalf("merge(old, replacePatch(old,new)) = %v", dst)
	}
}
