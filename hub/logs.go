package hub

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/atomicfile"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Remote log collection against the stand-in: StartLogCollection writes the request into a
// device's desired diagnosticInformation.service (as the Device Update service does), and
// LogStore is a tiny Blob Storage stand-in for the uploads: the Put Blob call the agents make
// (PUT …/CONTAINER/BLOB?<SAS>, x-ms-blob-type: BlockBlob, 201 Created), with a token per
// container that SASURL hands out, and nothing else of the Blob API.

// MaxLogBlob bounds one uploaded blob.
const MaxLogBlob = 64 << 20

// ErrLogStore is wrapped by the errors of LogStore's methods.
var ErrLogStore = errkind.New(errkind.Environment, "hub: log store")

// blobPart is one segment of a container or blob name the store takes.
var blobPart = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$`)

// LogStore keeps uploaded logs under a folder: <dir>/<container>/<blob path>.
type LogStore struct {
	root   *os.Root
	dir    string
	mu     sync.Mutex
	tokens map[string]string // container → its token
}

// NewLogStore keeps logs under dir (created if missing).
func NewLogStore(dir string) (*LogStore, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogStore, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogStore, err)
	}
	return &LogStore{root: root, dir: dir, tokens: map[string]string{}}, nil
}

// Close releases the folder.
func (s *LogStore) Close() error { return s.root.Close() }

// SASURL returns the URL of container under base (the URL the store is served at) with a
// new token that allows uploads into it.
func (s *LogStore) SASURL(base, container string) (string, error) {
	if !blobPart.MatchString(container) {
		return "", fmt.Errorf("%w: container name %q", ErrLogStore, container)
	}
	b := make([]byte, 16)
	rand.Read(b)
	tok := hex.EncodeToString(b)
	s.mu.Lock()
	s.tokens[container] = tok
	s.mu.Unlock()
	return strings.TrimSuffix(base, "/") + "/" + container + "?sv=2021-08-06&sr=c&sp=cw&sig=" + tok, nil
}

// ServeHTTP takes Put Blob into a container with its token; GET serves an uploaded blob.
func (s *LogStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	container, blob, err := splitBlobPath(r.URL.Path)
	if err != nil {
		blobError(w, http.StatusBadRequest, "InvalidResourceName", err.Error())
		return
	}
	s.mu.Lock()
	tok, ok := s.tokens[container]
	s.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("sig")), []byte(tok)) != 1 {
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "no valid SAS token for container "+container)
		return
	}
	switch r.Method {
	case http.MethodPut:
		s.putBlob(w, r, container, blob)
	case http.MethodGet:
		http.ServeFileFS(w, r, s.root.FS(), path.Join(container, blob))
	default:
		blobError(w, http.StatusMethodNotAllowed, "UnsupportedHttpVerb", r.Method)
	}
}

func (s *LogStore) putBlob(w http.ResponseWriter, r *http.Request, container, blob string) {
	switch {
	case r.Header.Get("x-ms-blob-type") != "BlockBlob":
		blobError(w, http.StatusBadRequest, "InvalidHeaderValue", "x-ms-blob-type must be BlockBlob")
		return
	case r.ContentLength < 0 || r.ContentLength > MaxLogBlob:
		blobError(w, http.StatusRequestEntityTooLarge, "RequestBodyTooLarge", fmt.Sprintf("a blob of at most %d bytes with a Content-Length", MaxLogBlob))
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, MaxLogBlob+1))
	if err != nil || int64(len(data)) != r.ContentLength {
		blobError(w, http.StatusBadRequest, "InvalidInput", "the body does not match Content-Length")
		return
	}
	name := path.Join(container, blob)
	if err := s.root.MkdirAll(path.Dir(name), 0o755); err != nil {
		blobError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if err := atomicfile.WriteFile(filepath.Join(s.dir, filepath.FromSlash(name)), data, 0o644); err != nil {
		blobError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// splitBlobPath splits /CONTAINER/BLOB/PATH into plain segments, refusing anything else.
func splitBlobPath(p string) (container, blob string, err error) {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(parts) < 2 {
		return "", "", errors.New("want /CONTAINER/BLOB")
	}
	for _, part := range parts {
		if !blobPart.MatchString(part) {
			return "", "", fmt.Errorf("name segment %.40q", part)
		}
	}
	return parts[0], strings.Join(parts[1:], "/"), nil
}

func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("x-ms-error-code", code)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>%s</Code><Message>%s</Message></Error>", code, html.EscapeString(msg))
}

// LogBlob is one uploaded log.
type LogBlob struct {
	Name string `json:"name"` // the blob path in its container
	Size int64  `json:"size"`
}

// Blobs lists the logs of container whose names start with prefix, sorted.
func (s *LogStore) Blobs(container, prefix string) ([]LogBlob, error) {
	if !blobPart.MatchString(container) {
		return nil, fmt.Errorf("%w: container name %q", ErrLogStore, container)
	}
	var out []LogBlob
	err := fs.WalkDir(s.root.FS(), container, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == container {
				return fs.SkipAll
			}
			return err
		}
		name := strings.TrimPrefix(p, container+"/")
		if d.Type().IsRegular() && strings.HasPrefix(name, prefix) && !strings.HasPrefix(path.Base(p), ".") {
			if info, err := d.Info(); err == nil {
				out = append(out, LogBlob{Name: name, Size: info.Size()})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogStore, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadBlob returns an uploaded blob.
func (s *LogStore) ReadBlob(container, name string) ([]byte, error) {
	c, blob, err := splitBlobPath("/" + container + "/" + name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogStore, err)
	}
	b, err := s.root.ReadFile(path.Join(c, blob))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLogStore, err)
	}
	return b, nil
}

// StartLogCollection asks a device to upload its logs for operationID to sasURL: the
// desired diagnosticInformation.service the Device Update service writes. It returns the
// desired $version.
func (h *Hub) StartLogCollection(deviceID, operationID, sasURL string) (int64, error) {
	patch, err := json.Marshal(map[string]any{adu.DiagnosticsComponent: map[string]any{"__t": "c",
		"service": map[string]string{"operationId": operationID, "storageSasUrl": sasURL}}})
	if err != nil {
		return 0, err
	}
	return h.SetDesired(deviceID, patch)
}

// LogCollectionResult is a device's reported diagnosticInformation.agent.
type LogCollectionResult struct {
	OperationID string `json:"operationId"`
	ResultCode  *int   `json:"resultCode"` // nil: nothing reported yet
}

// LogCollection returns what the device reported of its last log collection.
func (h *Hub) LogCollection(deviceID string) (LogCollectionResult, error) {
	tw, err := h.Twin(deviceID)
	if err != nil {
		return LogCollectionResult{}, err
	}
	var doc struct {
		Reported map[string]json.RawMessage `json:"reported"`
	}
	var c struct {
		Agent LogCollectionResult `json:"agent"`
	}
	if err := json.Unmarshal(tw, &doc); err != nil {
		return LogCollectionResult{}, err
	}
	if raw, ok := doc.Reported[adu.DiagnosticsComponent]; ok {
		json.Unmarshal(raw, &c)
	}
	return c.Agent, nil
}
