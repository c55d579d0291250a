package hub

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/imagestep"
	"github.com/aduflash/aduflash/manifestgen"
)

// Service errors.
var (
	ErrUpdateExists        = errors.New("hub: update already imported")
	ErrUnknownUpdate       = errors.New("hub: unknown update")
	ErrImportFiles         = errors.New("hub: import files do not match the import manifest")
	ErrNotDeployable       = errors.New("hub: update is not deployable")
	ErrNoMatchingDevices   = errors.New("hub: no registered device matches the group and the update's compatibility")
	ErrUnknownDeployment   = errors.New("hub: unknown deployment")
	ErrDeploymentCancelled = errors.New("hub: deployment is cancelled")
	ErrNoFailedDevices     = errors.New("hub: deployment has no failed devices")
)

// UpdateManifestVersion is the manifestVersion the Service writes: "5", as in
// every update manifest v5 the real service has been seen to sign (the "5.0"
// of the import manifest is not carried over).
const UpdateManifestVersion = "5"

// ServiceOptions configures a Service.
type ServiceOptions struct {
	// DataDir keeps imported updates (DataDir/updates), their files
	// (DataDir/files) and deployments (DataDir/deployments). Required; it may
	// be the Hub's DataDir.
	DataDir string
	// FileBaseURL is where FileHandler is reachable, e.g.
	// "http://127.0.0.1:8080/files": fileUrls are FileURL(FileBaseURL, id).
	// Required by Deploy; start the HTTP listener first to know its port.
	FileBaseURL string
	// RootKeyPackageURL, if set, is sent as service.rootKeyPackageUrl with
	// every deployment and cancel (agents of interface ;2 fetch it).
	RootKeyPackageURL string
	// Now is the clock for createdDateTime, deployment and retry times.
	// Default time.Now.
	Now func() time.Time
	// Logger receives the service's logs. Default: discarded.
	Logger *slog.Logger
}

// FileKind tells what an update file is.
type FileKind string

// File kinds.
const (
	FilePayload FileKind = "payload" // a file of the import manifest
	FileRelated FileKind = "related" // a related file (delta source) of a payload file
	// FileDetachedManifest is made by the Service for a reference step: the child update's
	// manifest wrapped as {"updateManifest":"…"}.
	FileDetachedManifest FileKind = "detachedManifest"
)

// UpdateFile is a file of an imported update, under its service file id.
type UpdateFile struct {
	ID          string            `json:"id"`
	Kind        FileKind          `json:"kind"`
	FileName    string            `json:"fileName"`
	SizeInBytes int64             `json:"sizeInBytes"`
	Hashes      map[string]string `json:"hashes"` // algorithm → standard base64
	// Parent is the file id a related file belongs to.
	Parent string `json:"parent,omitempty"`
}

// Update is an imported update.
type Update struct {
	UpdateID    adu.UpdateID `json:"updateId"`
	Description string       `json:"description,omitempty"`
	// Deployable is false when the import manifest said isDeployable false (a child update,
	// only installed through another update's reference step).
	Deployable    bool                `json:"deployable"`
	Compatibility []map[string]string `json:"compatibility"`
	// Manifest is the update manifest (the updateManifest string) and Signature its
	// updateManifestSignature.
	Manifest  string `json:"manifest"`
	Signature string `json:"signature"`
	// Files of the update, in manifest order (payloads, their related files, then detached
	// manifests of reference steps).
	Files []UpdateFile `json:"files"`
	// References are the child updates of reference steps, in step order.
	References     []adu.UpdateID `json:"references,omitempty"`
	ImportManifest string         `json:"importManifest"`
	ImportedAt     time.Time      `json:"importedAt"`
}

// Service is the Device Update service side of the stand-in: import of
// updates (validated with manifestgen, update manifest v5 signed by a
// Signer), a file server for their payloads, and deployments to groups of
// devices of a Hub whose results it follows from the reported twins, with
// cancel and retry; devices that join a deployment's group later get its
// deployment (see Deploy). Everything is kept in ServiceOptions.DataDir.
type Service struct {
	hub    *Hub
	signer *Signer
	opts   ServiceOptions
	unhook func()

	sendMu sync.Mutex // orders desired-property writes (held without mu)
	// joins runs the joins onReported starts (see join); Close waits for them.
	joins sync.WaitGroup

	mu      sync.Mutex
	closed  bool // Close was called: no more joins are started
	updates map[adu.UpdateID]*Update
	files   map[string]fileRef // file id → file
	deps    map[string]*depRecord
	current map[string]string // device id → deployment id it currently follows
}

type fileRef struct {
	update *Update
	file   UpdateFile
}

// NewService opens (or creates) the service state in opts.DataDir on top of
// h, signing with signer, and starts following the devices' reported
// properties. Close it before closing h.
func NewService(h *Hub, signer *Signer, opts ServiceOptions) (*Service, error) {
	if h == nil || signer == nil || signer.root == nil {
		return nil, fmt.Errorf("%w: NewService needs a Hub and a Signer", ErrInvalidOption)
	}
	if opts.DataDir == "" {
		return nil, fmt.Errorf("%w: ServiceOptions.DataDir is required", ErrInvalidOption)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{
		hub: h, signer: signer, opts: opts,
		updates: map[adu.UpdateID]*Update{},
		files:   map[string]fileRef{},
		deps:    map[string]*depRecord{},
		current: map[string]string{},
	}
	for _, d := range []string{s.updatesDir(), s.filesDir(), s.deploymentsDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("hub: service data dir: %w", err)
		}
	}
	if err := s.load(); err != nil {
		return nil, err
	}
	unReported := h.OnReported(s.onReported)
	unRemoved := h.onRemoved(s.onRemoved)
	s.unhook = func() { unReported(); unRemoved() }
	return s, nil
}

// onRemoved stops following a device removed from the hub (Hub.RemoveDevice):
// it follows no deployment any more, so that Cancel and Retry leave it out;
// every deployment that lists it marks it Removed, a result still in progress
// becoming Cancelled (a final one stays).
func (s *Service) onRemoved(deviceID string) {
	s.mu.Lock()
	delete(s.current, deviceID)
	var saves []pendingSave
	for _, r := range s.deps {
		if s.markRemovedLocked(r, deviceID) {
			seq, data, err := s.snapshotLocked(r)
			saves = append(saves, pendingSave{r, seq, data, err})
		}
	}
	s.mu.Unlock()
	if len(saves) == 0 {
		return
	}
	s.opts.Logger.Info("hub: a device of deployments was removed", "device", deviceID, "deployments", len(saves))
	if err := s.persistAll(saves); err != nil {
		s.opts.Logger.Error("hub: storing a deployment failed", "device", deviceID, "err", err)
	}
}

// markRemovedLocked marks the device Removed in r (Cancelled if it was in
// progress) and reports whether that changed r. Called with s.mu held.
func (s *Service) markRemovedLocked(r *depRecord, deviceID string) bool {
	ds := r.devs[deviceID]
	if ds == nil || ds.Removed {
		return false
	}
	ds.Removed = true
	if ds.State == DeviceInProgress {
		ds.State = DeviceCancelled
	}
	ds.UpdatedAt = s.opts.Now().UTC()
	return true
}

// Close stops following the hub and waits for the devices joining a
// deployment to get their desired service object. The state is already on
// disk.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.unhook()
	s.joins.Wait()
	return nil
}

func (s *Service) updatesDir() string     { return filepath.Join(s.opts.DataDir, "updates") }
func (s *Service) filesDir() string       { return filepath.Join(s.opts.DataDir, "files") }
func (s *Service) deploymentsDir() string { return filepath.Join(s.opts.DataDir, "deployments") }

func updateKey(u adu.UpdateID) string {
	return fileName(u.Provider) + "_" + fileName(u.Name) + "_" + fileName(u.Version)
}

func (s *Service) load() error {
	ents, err := os.ReadDir(s.updatesDir())
	if err != nil {
		return fmt.Errorf("hub: service data dir: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var u Update
		if err := readJSON(filepath.Join(s.updatesDir(), e.Name()), &u); err != nil {
			return err
		}
		s.addUpdateLocked(&u)
	}
	// Files no update names are left-overs of an interrupted import.
	if ents, err = os.ReadDir(s.filesDir()); err != nil {
		return fmt.Errorf("hub: service data dir: %w", err)
	}
	for _, e := range ents {
		if _, ok := s.files[e.Name()]; !ok {
			_ = os.Remove(filepath.Join(s.filesDir(), e.Name()))
		}
	}
	if ents, err = os.ReadDir(s.deploymentsDir()); err != nil {
		return fmt.Errorf("hub: service data dir: %w", err)
	}
	var recs []*depRecord
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var sd storedDeployment
		if err := readJSON(filepath.Join(s.deploymentsDir(), e.Name()), &sd); err != nil {
			return err
		}
		r := &depRecord{d: sd.Deployment, devs: sd.Devices}
		if r.devs == nil {
			r.devs = map[string]*DeviceStatus{}
		}
		s.deps[r.d.ID] = r
		recs = append(recs, r)
	}
	sortRecords(recs)
	// A hub that keeps its registry (DataDir) knows every device that was not removed (also
	// while no Service ran, e.g. offline); a removed device follows nothing.
	known := func(string) bool { return true }
	if s.hub.opts.DataDir != "" {
		reg := map[string]bool{}
		for _, id := range s.hub.Devices() {
			reg[id] = true
		}
		known = func(id string) bool { return reg[id] }
	}
	var saves []pendingSave
	for _, r := range recs {
		changed := false
		for id, st := range r.devs {
			switch {
			case !known(id): // removed while no Service ran (aduhub device remove --data)
				changed = s.markRemovedLocked(r, id) || changed
			case r.d.Cancelled || st.SupersededBy != "" || st.Removed:
			default:
				s.current[id] = r.d.ID
			}
		}
		if changed {
			seq, data, err := s.snapshotLocked(r)
			saves = append(saves, pendingSave{r, seq, data, err})
		}
	}
	return s.persistAll(saves)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("hub: service data dir: %w", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("hub: service data dir: %s: %w", path, err)
	}
	return nil
}

func (s *Service) addUpdateLocked(u *Update) {
	s.updates[u.UpdateID] = u
	for _, f := range u.Files {
		s.files[f.ID] = fileRef{update: u, file: f}
	}
}

// Updates returns the imported updates, sorted by provider, name, version
// (as strings).
func (s *Service) Updates() []Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Update, 0, len(s.updates))
	for _, u := range s.updates {
		out = append(out, *u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UpdateID.String() < out[j].UpdateID.String() })
	return out
}

// Update returns an imported update.
func (s *Service) Update(id adu.UpdateID) (*Update, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.updates[id]
	if u == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownUpdate, id)
	}
	c := *u
	return &c, nil
}

// Import imports an update like the service: the import manifest is
// validated with manifestgen (the service's limits), every file it names
// (payloads and related files) must be in files (file name → local path)
// with the size and hashes the manifest gives (sha256, sha384, sha512), the
// files are copied into DataDir and get opaque file ids ("f" + 16 hex
// digits), the update manifest v5 is produced in the real manifests' shape
// (member order manifestVersion, updateId, compatibility, instructions,
// files, createdDateTime; compact; fileName; a files map by id) and signed.
// Reference steps need their child update imported before; the Service
// makes the detached manifest file ({"updateManifest":"…"}) the real
// service serves for them. An update id can be imported once. Unlike the
// service, the steps for aduagent's handler aduflash/image:1 are checked
// against their images (internal/imagestep): what the device would refuse is
// refused here, as a *manifestgen.ValidationError.
//
// The paths in files are trusted (any path of this machine); only regular
// files are read. For paths from someone else, use ImportFrom.
func (s *Service) Import(importManifestJSON []byte, files map[string]string) (*Update, error) {
	return s.ImportFrom(importManifestJSON, nil, files)
}

// ImportFrom is Import with the paths of files inside dir: each is relative
// to dir and may not leave it, also not through a symbolic link (os.Root), and
// must be a regular file (not a FIFO, a device or a folder), so a request
// naming the paths reads nothing else and learns nothing about what lies
// outside dir. A nil dir is Import's trusted paths.
func (s *Service) ImportFrom(importManifestJSON []byte, dir *os.Root, files map[string]string) (*Update, error) {
	m, err := manifestgen.Parse(importManifestJSON)
	if err != nil {
		return nil, err
	}
	uid := adu.UpdateID{Provider: m.UpdateID.Provider, Name: m.UpdateID.Name, Version: m.UpdateID.Version}

	s.mu.Lock()
	if _, ok := s.updates[uid]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrUpdateExists, uid)
	}
	var children []*Update
	for i, st := range m.Instructions.Steps {
		if !st.IsReference() {
			continue
		}
		cid := adu.UpdateID{Provider: st.UpdateID.Provider, Name: st.UpdateID.Name, Version: st.UpdateID.Version}
		c := s.updates[cid]
		if c == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: steps[%d] refers to %s, which is not imported", ErrUnknownUpdate, i, cid)
		}
		if len(c.References) > 0 {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: steps[%d] refers to %s, which has reference steps itself", manifestgen.ErrInvalid, i, cid)
		}
		children = append(children, c)
	}
	s.mu.Unlock()
	// Files are copied and hashed without the lock (devices keep reporting meanwhile).

	// Which names the manifest needs, and check that files gives exactly those.
	need := map[string]bool{}
	for _, f := range m.Files {
		need[f.Filename] = true
		for _, r := range f.RelatedFiles {
			need[r.Filename] = true
		}
	}
	var problems []string
	for name := range need {
		if _, ok := files[name]; !ok {
			problems = append(problems, fmt.Sprintf("%q is missing", name))
		}
	}
	for name := range files {
		if !need[name] {
			problems = append(problems, fmt.Sprintf("%q is not in the import manifest", name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%w: %s", ErrImportFiles, strings.Join(problems, "; "))
	}

	u := &Update{
		UpdateID:       uid,
		Description:    m.Description,
		Deployable:     m.IsDeployable == nil || *m.IsDeployable,
		ImportManifest: string(importManifestJSON),
		ImportedAt:     s.opts.Now().UTC(),
	}
	for _, c := range m.Compatibility {
		cm := make(map[string]string, len(c))
		for _, p := range c {
			cm[p.Name] = p.Value
		}
		u.Compatibility = append(u.Compatibility, cm)
	}

	// Copy and check the files; temporaries are removed unless all succeed.
	var staged []string
	done := false
	defer func() {
		if !done {
			for _, p := range staged {
				_ = os.Remove(p)
			}
		}
	}()
	used := map[string]bool{}
	newID := func() string {
		for {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id := "f" + hex.EncodeToString(b[:])
			s.mu.Lock()
			_, taken := s.files[id]
			s.mu.Unlock()
			if !taken && !used[id] {
				used[id] = true
				return id
			}
		}
	}
	stage := func(kind FileKind, name string, size int64, hashes map[string]string, parent string) (UpdateFile, error) {
		id := newID()
		dst := filepath.Join(s.filesDir(), id)
		staged = append(staged, dst)
		if err := copyChecked(dir, files[name], dst, size, hashes); err != nil {
			return UpdateFile{}, fmt.Errorf("%w: %s: %w", ErrImportFiles, name, err)
		}
		return UpdateFile{ID: id, Kind: kind, FileName: name, SizeInBytes: size, Hashes: hashes, Parent: parent}, nil
	}
	byName := map[string]string{} // payload file name → id
	type relOut struct {
		f     UpdateFile
		props manifestgen.Object
	}
	rels := map[string][]relOut{}
	for _, f := range m.Files {
		uf, err := stage(FilePayload, f.Filename, f.SizeInBytes, map[string]string(f.Hashes), "")
		if err != nil {
			return nil, err
		}
		u.Files = append(u.Files, uf)
		byName[f.Filename] = uf.ID
		for _, r := range f.RelatedFiles {
			rf, err := stage(FileRelated, r.Filename, r.SizeInBytes, map[string]string(r.Hashes), uf.ID)
			if err != nil {
				return nil, err
			}
			u.Files = append(u.Files, rf)
			rels[uf.ID] = append(rels[uf.ID], relOut{rf, r.Properties})
		}
	}
	// The images of aduflash/image:1 steps as aduagent would check them (the staged copies, whose hashes matched).
	if err := imagestep.Check(m, func(name string) string { return filepath.Join(s.filesDir(), byName[name]) }); err != nil {
		return nil, err
	}
	detached := map[int]string{} // step index → file id
	ci := 0
	for i, st := range m.Instructions.Steps {
		if !st.IsReference() {
			continue
		}
		c := children[ci]
		ci++
		var b bytes.Buffer
		b.WriteString(`{"updateManifest":`)
		b.Write(jsonString(c.Manifest))
		b.WriteString("}")
		id := newID()
		dst := filepath.Join(s.filesDir(), id)
		staged = append(staged, dst)
		if err := writeFileAtomic(dst, b.Bytes(), 0o600); err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b.Bytes())
		name := strings.ToLower(c.UpdateID.Provider+"."+c.UpdateID.Name) + "." + c.UpdateID.Version + ".updatemanifest5.json"
		u.Files = append(u.Files, UpdateFile{ID: id, Kind: FileDetachedManifest, FileName: name, SizeInBytes: int64(b.Len()),
			Hashes: map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}})
		u.References = append(u.References, c.UpdateID)
		detached[i] = id
	}

	// The update manifest, member by member in the service's order.
	var b bytes.Buffer
	b.WriteString(`{"manifestVersion":`)
	b.Write(jsonString(UpdateManifestVersion))
	b.WriteString(`,"updateId":{"provider":`)
	b.Write(jsonString(uid.Provider))
	b.WriteString(`,"name":`)
	b.Write(jsonString(uid.Name))
	b.WriteString(`,"version":`)
	b.Write(jsonString(uid.Version))
	b.WriteString(`},"compatibility":[`)
	for i, c := range m.Compatibility {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeCompact(&b, c); err != nil {
			return nil, err
		}
	}
	b.WriteString(`],"instructions":{"steps":[`)
	for i, st := range m.Instructions.Steps {
		if i > 0 {
			b.WriteByte(',')
		}
		if st.IsReference() {
			b.WriteString(`{"type":"reference","detachedManifestFileId":`)
			b.Write(jsonString(detached[i]))
			b.WriteByte('}')
			continue
		}
		b.WriteString(`{"handler":`)
		b.Write(jsonString(st.Handler))
		b.WriteString(`,"files":[`)
		for j, name := range st.Files {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(jsonString(byName[name]))
		}
		b.WriteByte(']')
		if st.HandlerProperties != nil {
			b.WriteString(`,"handlerProperties":`)
			if err := writeCompact(&b, st.HandlerProperties); err != nil {
				return nil, err
			}
		}
		b.WriteByte('}')
	}
	b.WriteString(`]},"files":{`)
	first := true
	writeEntry := func(f UpdateFile) {
		b.WriteString(`"fileName":`)
		b.Write(jsonString(f.FileName))
		fmt.Fprintf(&b, `,"sizeInBytes":%d,"hashes":{`, f.SizeInBytes)
		algs := make([]string, 0, len(f.Hashes))
		for a := range f.Hashes {
			algs = append(algs, a)
		}
		sort.Strings(algs)
		for k, a := range algs {
			if k > 0 {
				b.WriteByte(',')
			}
			b.Write(jsonString(a))
			b.WriteByte(':')
			b.Write(jsonString(f.Hashes[a]))
		}
		b.WriteByte('}')
	}
	for fi, f := range u.Files {
		if f.Kind == FileRelated {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(jsonString(f.ID))
		b.WriteString(":{")
		writeEntry(f)
		if f.Kind == FilePayload {
			if rs := rels[f.ID]; len(rs) > 0 {
				b.WriteString(`,"relatedFiles":{`)
				for k, r := range rs {
					if k > 0 {
						b.WriteByte(',')
					}
					b.Write(jsonString(r.f.ID))
					b.WriteString(":{")
					writeEntry(r.f)
					if r.props != nil {
						b.WriteString(`,"properties":`)
						if err := writeCompact(&b, r.props); err != nil {
							return nil, err
						}
					}
					b.WriteByte('}')
				}
				b.WriteByte('}')
			}
			if dh := importFileOf(m, fi, u.Files); dh != nil && dh.DownloadHandler != nil {
				b.WriteString(`,"downloadHandler":{"id":`)
				b.Write(jsonString(dh.DownloadHandler.ID))
				b.WriteByte('}')
			}
		}
		b.WriteByte('}')
	}
	b.WriteString(`},"createdDateTime":`)
	b.Write(jsonString(u.ImportedAt.Format("2006-01-02T15:04:05.9999999Z")))
	b.WriteByte('}')
	u.Manifest = b.String()
	if _, err := adu.ParseManifest(b.Bytes()); err != nil {
		return nil, fmt.Errorf("hub: import: the update manifest made does not parse: %w", err)
	}
	if u.Signature, err = s.signer.Sign(b.Bytes()); err != nil {
		return nil, err
	}

	data, err := marshal(u)
	if err != nil {
		return nil, err
	}
	if err := syncDir(s.filesDir()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.updates[uid]; ok {
		return nil, fmt.Errorf("%w: %s", ErrUpdateExists, uid)
	}
	if err := writeFileAtomic(filepath.Join(s.updatesDir(), updateKey(uid)+".json"), data, 0o600); err != nil {
		return nil, err
	}
	done = true
	s.addUpdateLocked(u)
	s.opts.Logger.Info("hub: imported", "update", uid.String(), "files", len(u.Files))
	c := *u
	return &c, nil
}

// importFileOf returns the import manifest's file for u.Files[fi] (a payload).
func importFileOf(m *manifestgen.Manifest, fi int, files []UpdateFile) *manifestgen.File {
	for i := range m.Files {
		if m.Files[i].Filename == files[fi].FileName {
			return &m.Files[i]
		}
	}
	return nil
}

func jsonString(s string) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return bytes.TrimRight(b.Bytes(), "\n")
}

// writeCompact writes v's JSON (which keeps its member order) compacted.
func writeCompact(b *bytes.Buffer, v json.Marshaler) error {
	raw, err := v.MarshalJSON()
	if err != nil {
		return fmt.Errorf("hub: import: %w", err)
	}
	return json.Compact(b, raw)
}

// copyChecked copies src (a regular file in dir, see openRegular) to dst
// (fsynced) while hashing it, and fails unless the size and every hash match.
func copyChecked(dir *os.Root, src, dst string, size int64, hashes map[string]string) error {
	in, err := openRegular(dir, src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	hs := map[string]hash.Hash{}
	ws := []io.Writer{out}
	for alg := range hashes {
		var h hash.Hash
		switch strings.ToLower(alg) {
		case "sha256":
			h = sha256.New()
		case "sha384":
			h = sha512.New384()
		case "sha512":
			h = sha512.New()
		default:
			return fmt.Errorf("cannot check hash algorithm %q", alg)
		}
		hs[alg] = h
		ws = append(ws, h)
	}
	n, err := io.CopyBuffer(io.MultiWriter(ws...), io.LimitReader(in, size+1), make([]byte, 1<<20))
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("size %d, the import manifest says %d", n, size)
	}
	for alg, h := range hs {
		want, err := base64.StdEncoding.DecodeString(hashes[alg])
		if err != nil || !bytes.Equal(want, h.Sum(nil)) {
			return fmt.Errorf("%s hash does not match the import manifest", alg)
		}
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// ErrNotRegular is returned for an import file that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// openRegular opens path for reading, inside dir (nil: anywhere), if it is a
// regular file. It is opened without blocking (a FIFO swapped in after the
// check does not hold the caller) and checked again once open.
func openRegular(dir *os.Root, path string) (*os.File, error) {
	stat, open := os.Stat, os.OpenFile
	if dir != nil {
		stat, open = dir.Stat, dir.OpenFile
	}
	before, err := stat(path)
	if err != nil {
		return nil, err
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	f, err := open(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	after, err := f.Stat()
	if err != nil || !after.Mode().IsRegular() || !os.SameFile(before, after) {
		f.Close()
		return nil, fmt.Errorf("%s: %w (it changed while it was opened)", path, ErrNotRegular)
	}
	return f, nil
}

// FileURL is the URL of an update file under base (where FileHandler is
// served): base/{fileID}/{fileName}, like the service's
// …/{opaque id}/{fileName} URLs. It returns "" for an unknown file id.
func (s *Service) FileURL(base, fileID string) string {
	s.mu.Lock()
	ref, ok := s.files[fileID]
	s.mu.Unlock()
	if !ok {
		return ""
	}
	return s.fileURL(base, ref.file)
}

// serveFile is FileHandler without its logs.
func (s *Service) serveFile() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		segs := strings.Split(strings.TrimRight(r.URL.Path, "/"), "/")
		if len(segs) < 2 {
			http.NotFound(w, r)
			return
		}
		id, name := segs[len(segs)-2], segs[len(segs)-1]
		s.mu.Lock()
		ref, ok := s.files[id]
		s.mu.Unlock()
		if !ok || ref.file.FileName != name {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(filepath.Join(s.filesDir(), id))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		ct := "application/octet-stream"
		if strings.HasSuffix(name, ".json") {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		if h := ref.file.Hashes["sha256"]; h != "" {
			w.Header().Set("ETag", `"`+h+`"`)
		}
		http.ServeContent(w, r, name, ref.update.ImportedAt, f)
	})
}
