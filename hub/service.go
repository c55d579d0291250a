package hub

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Service errors.
var (
	ErrUpdateExists        = errkind.New(errkind.Input, "hub: update already imported")
	ErrUnknownUpdate       = errkind.New(errkind.Input, "hub: unknown update")
	ErrImportFiles         = errkind.New(errkind.Input, "hub: import files do not match the import manifest")
	ErrNotDeployable       = errkind.New(errkind.Input, "hub: update is not deployable")
	ErrNoMatchingDevices   = errkind.New(errkind.Input, "hub: no registered device matches the group and the update's compatibility")
	ErrUnknownDeployment   = errkind.New(errkind.Input, "hub: unknown deployment")
	ErrDeploymentCancelled = errkind.New(errkind.Input, "hub: deployment is cancelled")
	ErrNoFailedDevices     = errkind.New(errkind.Input, "hub: deployment has no failed devices")
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
	updates, err := readJSONDir[Update](s.updatesDir())
	if err != nil {
		return err
	}
	for _, u := range updates {
		s.addUpdateLocked(u)
	}
	// Files no update names are left-overs of an interrupted import.
	ents, err := os.ReadDir(s.filesDir())
	if err != nil {
		return fmt.Errorf("hub: service data dir: %w", err)
	}
	for _, e := range ents {
		if _, ok := s.files[e.Name()]; !ok {
			_ = os.Remove(filepath.Join(s.filesDir(), e.Name()))
		}
	}
	stored, err := readJSONDir[storedDeployment](s.deploymentsDir())
	if err != nil {
		return err
	}
	var recs []*depRecord
	for _, sd := range stored {
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

// readJSONDir reads every .json file of dir (not hidden ones) as a T, in name order.
func readJSONDir[T any](dir string) ([]*T, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("hub: service data dir: %w", err)
	}
	var out []*T
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		v := new(T)
		if err := readJSON(filepath.Join(dir, e.Name()), v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
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
