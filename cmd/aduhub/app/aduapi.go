package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/manifestgen"
	"github.com/aduflash/aduflash/publish"
)

// The part of the Device Update data-plane API (api-version 2022-10-01) that aduimport
// publish speaks, on serve's HTTP port with the API token as the bearer token:
//
//	POST /deviceUpdate/{instance}/updates:import     [publish.ImportItem] (one) → 202,
//	                                                  Operation-Location
//	GET  /deviceUpdate/{instance}/updates/operations/{id}                   publish.Operation
//	GET  /deviceUpdate/{instance}/updates/providers/{p}/names/{n}/versions/{v}  aduUpdate
//
// aduhub has one instance: any instance name reaches it. The import fetches the manifest
// and the files from their URLs (hub.Fetcher: only the --blob-host hosts), in the
// background; operations live in memory (the last maxOperations) and end with the server.
// Errors are the service's {"error": {"code", "message"}}.

// maxOperations is how many import operations the server remembers.
const maxOperations = 1000

// aduUpdate is an update as GET …/versions/{v} shows it (a subset of the service's).
type aduUpdate struct {
	UpdateID         manifestgen.UpdateID `json:"updateId"`
	Description      string               `json:"description,omitempty"`
	IsDeployable     bool                 `json:"isDeployable"`
	Compatibility    []map[string]string  `json:"compatibility"`
	ManifestVersion  string               `json:"manifestVersion"`
	ImportedDateTime string               `json:"importedDateTime"`
}

// operations are the import operations of a serve, oldest first.
type operations struct {
	mu    sync.Mutex
	byID  map[string]*publish.Operation
	order []string
	// bg is the context of the imports running; stop ends them and waits; closed (under mu)
	// refuses new ones from then on.
	bg     context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed bool
}

func newOperations() *operations {
	ctx, cancel := context.WithCancel(context.Background())
	return &operations{byID: map[string]*publish.Operation{}, bg: ctx, cancel: cancel}
}

// start runs f in the background unless stop was called; it reports whether it did.
func (o *operations) start(f func()) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	o.wg.Go(f)
	return true
}

// stop cancels the imports running and waits for them; no import starts after it.
func (o *operations) stop() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.cancel()
	o.wg.Wait()
}

// add remembers a new operation, forgetting the oldest beyond maxOperations.
func (o *operations) add(op *publish.Operation) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.byID[op.OperationID] = op
	o.order = append(o.order, op.OperationID)
	if len(o.order) > maxOperations {
		delete(o.byID, o.order[0])
		o.order = o.order[1:]
	}
}

// get returns a copy of operation id.
func (o *operations) get(id string) (publish.Operation, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.byID[id]
	if !ok {
		return publish.Operation{}, false
	}
	return *op, true
}

// update changes operation op under the lock.
func (o *operations) update(op *publish.Operation, f func(*publish.Operation)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(op)
	op.LastActionDateTime = time.Now().UTC().Format(time.RFC3339Nano)
}

func (s *server) aduRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /deviceUpdate/{instance}/updates:import", s.aduImport)
	mux.HandleFunc("GET /deviceUpdate/{instance}/updates/operations/{id}", s.aduOperation)
	mux.HandleFunc("GET /deviceUpdate/{instance}/updates/providers/{provider}/names/{name}/versions/{version}", s.aduUpdate)
}

// writeADUError answers with the service's error object.
func writeADUError(w http.ResponseWriter, status int, code, format string, args ...any) {
	writeAPI(w, status, publish.ErrorResponse{Error: publish.ServiceError{Code: code, Message: fmt.Sprintf(format, args...)}})
}

// aduVersionOK answers 400 unless the request names the API version aduhub speaks.
func aduVersionOK(w http.ResponseWriter, r *http.Request) bool {
	if v := r.URL.Query().Get("api-version"); v != publish.DefaultAPIVersion {
		writeADUError(w, http.StatusBadRequest, "UnsupportedApiVersion", "api-version %q: aduhub speaks %s", v, publish.DefaultAPIVersion)
		return false
	}
	return true
}

func (s *server) aduImport(w http.ResponseWriter, r *http.Request) {
	if !aduVersionOK(w, r) {
		return
	}
	var items []publish.ImportItem
	if err := decodeBody(r, &items); err != nil {
		writeADUError(w, http.StatusBadRequest, "BadRequest", "%v", err)
		return
	}
	req, err := s.urlImport(items)
	if err != nil {
		writeADUError(w, http.StatusBadRequest, "BadRequest", "%v", err)
		return
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	op := &publish.Operation{OperationID: newOperationID(), Status: publish.StatusNotStarted, CreatedDateTime: now, LastActionDateTime: now}
	if !s.ops.start(func() { s.runImport(op, req, r.PathValue("instance"), items[0].FriendlyName) }) {
		writeADUError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "aduhub is stopping")
		return
	}
	s.ops.add(op)
	loc := "/deviceUpdate/" + url.PathEscape(r.PathValue("instance")) + "/updates/operations/" + op.OperationID + "?api-version=" + publish.DefaultAPIVersion
	w.Header().Set("Operation-Location", loc)
	w.WriteHeader(http.StatusAccepted)
}

// urlImport checks the one import item of a request: its manifest reference and files,
// their URLs on the blob hosts.
func (s *server) urlImport(items []publish.ImportItem) (hub.URLImport, error) {
	var req hub.URLImport
	if len(items) != 1 {
		return req, fmt.Errorf("aduhub imports one update per request, got %d", len(items))
	}
	it := items[0]
	req = hub.URLImport{ManifestURL: it.ImportManifest.URL, ManifestSize: it.ImportManifest.SizeInBytes,
		ManifestSHA256: it.ImportManifest.Hashes["sha256"], Files: map[string]string{}}
	if req.ManifestURL == "" || req.ManifestSHA256 == "" {
		return req, errors.New("importManifest: url and hashes.sha256 are required")
	}
	if n := len([]rune(it.FriendlyName)); n > 512 {
		return req, fmt.Errorf("friendlyName: %d characters, at most 512", n)
	}
	for _, f := range it.Files {
		if _, dup := req.Files[f.Filename]; dup || f.Filename == "" {
			return req, fmt.Errorf("files: %q is empty or given twice", f.Filename)
		}
		req.Files[f.Filename] = f.URL
	}
	for _, raw := range append([]string{req.ManifestURL}, filesURLs(req.Files)...) {
		if err := s.fetcher.Check(raw); err != nil {
			return req, err
		}
	}
	return req, nil
}

func filesURLs(files map[string]string) []string {
	out := make([]string, 0, len(files))
	for _, u := range files {
		out = append(out, u)
	}
	return out
}

// runImport runs an accepted import and records its end in op.
func (s *server) runImport(op *publish.Operation, req hub.URLImport, instance, friendlyName string) {
	s.ops.update(op, func(op *publish.Operation) { op.Status = publish.StatusRunning })
	u, err := s.svc.ImportURLs(s.ops.bg, req, s.fetcher, filepath.Join(s.info.DataDir, uploadsDir))
	s.ops.update(op, func(op *publish.Operation) {
		if err != nil {
			op.Status = publish.StatusFailed
			op.Error = importFailure(err)
			return
		}
		id := manifestgen.UpdateID{Provider: u.UpdateID.Provider, Name: u.UpdateID.Name, Version: u.UpdateID.Version}
		op.Status = publish.StatusSucceeded
		op.Update = &publish.UpdateInfo{UpdateID: id, Description: u.Description, FriendlyName: friendlyName}
		op.ResourceLocation = "/deviceUpdate/" + url.PathEscape(instance) + "/updates/providers/" + url.PathEscape(id.Provider) +
			"/names/" + url.PathEscape(id.Name) + "/versions/" + url.PathEscape(id.Version) + "?api-version=" + publish.DefaultAPIVersion
	})
	if err != nil {
		s.log.Warn("import failed", "operation", op.OperationID, "err", err)
		return
	}
	s.log.Info("update imported", "update", updateIDText(u.UpdateID), "files", len(u.Files), "operation", op.OperationID)
}

// importFailure is the service's error object for a failed import, with the codes the
// service documents for its content service.
func importFailure(err error) *publish.ServiceError {
	code := "ImportFailed"
	switch {
	case errors.Is(err, hub.ErrUpdateExists):
		code = "UpdateAlreadyExists"
	case errors.Is(err, hub.ErrDownload):
		code = "CannotDownload"
	case errors.Is(err, hub.ErrImportManifest), errors.Is(err, manifestgen.ErrInvalid), errors.Is(err, hub.ErrUnknownUpdate):
		code = "CannotProcessImportManifest"
	case errors.Is(err, hub.ErrImportFiles), errors.Is(err, hub.ErrURLNotAllowed):
		code = "CannotProcessUpdateFile"
	}
	return &publish.ServiceError{Code: code, Message: err.Error(), OccurredDateTime: time.Now().UTC().Format(time.RFC3339Nano)}
}

// newOperationID is 16 random bytes in hex.
func newOperationID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *server) aduOperation(w http.ResponseWriter, r *http.Request) {
	if !aduVersionOK(w, r) {
		return
	}
	op, ok := s.ops.get(r.PathValue("id"))
	if !ok {
		writeADUError(w, http.StatusNotFound, "NotFound", "no operation %q (aduhub keeps the last %d, until it stops)", r.PathValue("id"), maxOperations)
		return
	}
	if op.Status == publish.StatusNotStarted || op.Status == publish.StatusRunning {
		w.Header().Set("Retry-After", "1")
	}
	writeAPI(w, http.StatusOK, op)
}

func (s *server) aduUpdate(w http.ResponseWriter, r *http.Request) {
	if !aduVersionOK(w, r) {
		return
	}
	id := adu.UpdateID{Provider: r.PathValue("provider"), Name: r.PathValue("name"), Version: r.PathValue("version")}
	u, err := s.svc.Update(id)
	if err != nil {
		writeADUError(w, http.StatusNotFound, "UpdateNotFound", "%s is not imported", updateIDText(id))
		return
	}
	writeAPI(w, http.StatusOK, aduUpdate{
		UpdateID:    manifestgen.UpdateID{Provider: u.UpdateID.Provider, Name: u.UpdateID.Name, Version: u.UpdateID.Version},
		Description: u.Description, IsDeployable: u.Deployable, Compatibility: u.Compatibility,
		ManifestVersion: manifestgen.ManifestVersion, ImportedDateTime: u.ImportedAt.UTC().Format(time.RFC3339Nano)})
}
