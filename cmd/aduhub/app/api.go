package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/internal/limitread"
	"github.com/aduflash/aduflash/manifestgen"
)

// The JSON API of serve (all under /api/, each request with the API token: see auth):
//
//	GET  /api/info                       serveInfo
//	GET  /api/devices                    []deviceInfo
//	POST /api/devices                    addRequest → deviceAdded (201 created; 409 already
//	                                     registered with a key, which is never shown again;
//	                                     200 an X.509 device already there with that thumbprint)
//	POST /api/devices/{id}/renew-key     {} → deviceAdded with a new key (the device is disconnected)
//	DELETE /api/devices/{id}             deviceRemoved (404 unknown device)
//	GET  /api/updates                    []hub.Update
//	POST /api/updates                    multipart/form-data: a part "importManifest", then a
//	                                     part "file" per file (its file name the manifest's);
//	                                     or importRequest (files in the import folder) → hub.Update (201)
//	GET  /api/deployments                []hub.DeploymentStatus, oldest first
//	POST /api/deployments                deployRequest → deployResponse (201)
//	GET  /api/deployments/{id}           hub.DeploymentStatus
//	POST /api/deployments/{id}/cancel    hub.DeploymentStatus
//	POST /api/deployments/{id}/retry     retryResponse
//
// Errors are {"error": message, "exitCode": 1 or 3} with a 4xx (the request's fault) or 5xx
// status. POST bodies must be application/json (so a web page in a browser cannot post to the
// API without a CORS preflight, which is never granted), but for an import's upload.

const maxAPIBody = 4 << 20

type apiError struct {
	Error    string `json:"error"`
	ExitCode int    `json:"exitCode"`
}

type deviceInfo struct {
	DeviceID  string `json:"deviceId"`
	Connected bool   `json:"connected"`
	// ConnectionSince is when the device's connection was made or, not connected, when it
	// ended (absent: not since serve started); LeftCleanly: it ended with the device's
	// DISCONNECT (what an agent sends before it reboots).
	ConnectionSince time.Time `json:"connectionSince,omitzero"`
	LeftCleanly     bool      `json:"leftCleanly,omitempty"`
	// Banks is what the agent last reported of its banks (aduagent's own reported property
	// aduflashBanks: running, primary, pending bank), if it reports them.
	Banks *agentBanks `json:"banks,omitempty"`
	// Activity is what the device is doing, as far as the hub can tell (see activity).
	Activity string `json:"activity,omitempty"`
	ModelID  string `json:"modelId,omitempty"` // PnP model id of the last CONNECT
	// DeviceProperties are the reported deviceUpdate.agent.deviceProperties (manufacturer,
	// model, …), values as text.
	DeviceProperties map[string]string `json:"deviceProperties,omitempty"`
	// State is the reported agent state (0 Idle, 6 DeploymentInProgress, 255 Failed).
	State *int `json:"state,omitempty"`
	// InstalledUpdateID is the reported installedUpdateId (compact JSON text) and
	// InstalledUpdate the same as provider/name/version.
	InstalledUpdateID string `json:"installedUpdateId,omitempty"`
	InstalledUpdate   string `json:"installedUpdate,omitempty"`
	// Deployment is the deployment the device follows ("" none).
	Deployment string `json:"deployment,omitempty"`
}

type addRequest struct {
	DeviceID string `json:"deviceId"`
	// X509Thumbprint, if set, registers an X.509 device: the SHA-256 thumbprint of its client
	// certificate (hex, ':' separators allowed) instead of a generated SAS key.
	X509Thumbprint string `json:"x509Thumbprint,omitempty"`
}

type deviceAdded struct {
	DeviceID string `json:"deviceId"`
	Created  bool   `json:"created"`
	// ConnectionString: HostName=…;DeviceId=…;SharedAccessKey=… for a SAS device,
	// HostName=…;DeviceId=…;x509=true for an X.509 device.
	ConnectionString string `json:"connectionString"`
	// Authentication is "sas" (the key in the connection string) or "x509" (the device's client
	// certificate, whose SHA-256 thumbprint X509Thumbprint is, lower-case hex).
	Authentication string `json:"authentication"`
	X509Thumbprint string `json:"x509Thumbprint,omitempty"`
	HostName       string `json:"hostName"`
	MQTT           string `json:"mqtt,omitempty"` // "" when added offline
	TLS            bool   `json:"tls"`
	CAFile         string `json:"caFile,omitempty"`
	RootKeysFile   string `json:"rootKeysFile"`
}

type deviceRemoved struct {
	DeviceID string `json:"deviceId"`
	Removed  bool   `json:"removed"`
}

type importRequest struct {
	// ImportManifest is the import manifest's text.
	ImportManifest string `json:"importManifest"`
	// Files maps the file names of the manifest to paths inside the server's import folder
	// (serve --import-dir), relative to it.
	Files map[string]string `json:"files"`
}

// Multipart form names of an import's upload.
const (
	uploadManifestPart = "importManifest"
	uploadFilePart     = "file"
)

type deployRequest struct {
	UpdateID adu.UpdateID      `json:"updateId"`
	Group    map[string]string `json:"group,omitempty"`
}

type deployResponse struct {
	Deployment hub.DeploymentStatus `json:"deployment"`
	// Warning: the deployment was made but some devices could not be sent it.
	Warning string `json:"warning,omitempty"`
}

type retryResponse struct {
	Retried    []string             `json:"retried"`
	Deployment hub.DeploymentStatus `json:"deployment"`
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/info", func(w http.ResponseWriter, r *http.Request) { writeAPI(w, http.StatusOK, s.info) })
	mux.HandleFunc("GET /api/devices", func(w http.ResponseWriter, r *http.Request) { writeAPI(w, http.StatusOK, s.devices()) })
	mux.HandleFunc("POST /api/devices", s.addDevice)
	mux.HandleFunc("POST /api/devices/{id}/renew-key", s.renewKey)
	mux.HandleFunc("DELETE /api/devices/{id}", s.removeDevice)
	mux.HandleFunc("GET /api/enrollments", func(w http.ResponseWriter, r *http.Request) { writeAPI(w, http.StatusOK, listEnrollments(s.hub)) })
	mux.HandleFunc("POST /api/enrollments", s.addEnrollment)
	mux.HandleFunc("DELETE /api/enrollments/{id}", s.removeEnrollment)
	mux.HandleFunc("GET /api/updates", func(w http.ResponseWriter, r *http.Request) { writeAPI(w, http.StatusOK, nonNil(s.svc.Updates())) })
	mux.HandleFunc("POST /api/updates", s.importUpdate)
	mux.HandleFunc("GET /api/deployments", func(w http.ResponseWriter, r *http.Request) {
		writeAPI(w, http.StatusOK, nonNil(s.svc.Deployments()))
	})
	mux.HandleFunc("POST /api/deployments", s.deploy)
	mux.HandleFunc("GET /api/deployments/{id}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.svc.Status(r.PathValue("id"))
		if err != nil {
			writeAPIError(w, deploymentErr(r.PathValue("id"), err))
			return
		}
		writeAPI(w, http.StatusOK, st)
	})
	mux.HandleFunc("POST /api/deployments/{id}/cancel", s.cancel)
	mux.HandleFunc("POST /api/deployments/{id}/retry", s.retry)
	mux.HandleFunc("POST /api/devices/{id}/logs", s.startLogs)
	mux.HandleFunc("GET /api/devices/{id}/logs/{op}", s.showLogs)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeAPIError(w, &httpError{http.StatusNotFound, fmt.Errorf("no API route %s %s", r.Method, r.URL.Path)})
	})
	mux.HandleFunc("GET /{$}", s.page)
	s.aduRoutes(mux)

	// Public: the update files (their URLs are the secret, as the service's CDN URLs are)
	// and the login; everything else needs the token.
	top := http.NewServeMux()
	top.Handle("/files/", s.svc.FileHandler())
	top.HandleFunc("/blobs/", s.blobs)
	top.HandleFunc("GET /login", s.auth.login)
	top.Handle("/", s.auth.require(mux))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			http.Error(w, "aduhub answers only requests for localhost and "+strings.Join(s.hosts, ", "), http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("Referrer-Policy", "no-referrer") // the login URL holds the token
		h.Set("X-Frame-Options", "DENY")        // no page of another site frames the buttons
		h.Set("Content-Security-Policy", "frame-ancestors 'none'")
		top.ServeHTTP(w, r)
	})
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// httpError is an API error with its status; the exit code follows from it (5xx: 3, else 1).
type httpError struct {
	status int
	err    error
}

func (e *httpError) Error() string { return e.err.Error() }

func writeAPI(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeAPIError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var he *httpError
	if errors.As(err, &he) {
		status = he.status
	}
	code := exitcode.Invalid
	if status >= 500 {
		code = exitcode.IO
	}
	writeAPI(w, status, apiError{Error: err.Error(), ExitCode: code})
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes", mbe.Limit)}
		}
		return &httpError{http.StatusBadRequest, fmt.Errorf("request body: %w", err)}
	}
	if _, err := dec.Token(); err != io.EOF {
		return &httpError{http.StatusBadRequest, errors.New("request body: more than one JSON value")}
	}
	return nil
}

// devices lists every registered device with what its twin says.
func (s *server) devices() []deviceInfo {
	out := []deviceInfo{}
	deps := deploymentsByID(s.svc.Deployments())
	for _, id := range s.hub.Devices() {
		conn := s.hub.Connection(id)
		d := deviceInfo{DeviceID: id, Connected: s.hub.Connected(id), ConnectionSince: conn.Since, LeftCleanly: !conn.Connected && conn.Clean,
			ModelID: s.hub.ModelID(id), Deployment: s.svc.CurrentDeployment(id)}
		if tw, err := s.hub.Twin(id); err == nil {
			var doc struct {
				Reported struct {
					Banks        *agentBanks `json:"aduflashBanks"`
					DeviceUpdate struct {
						Agent struct {
							DeviceProperties  map[string]any `json:"deviceProperties"`
							State             *int           `json:"state"`
							InstalledUpdateID string         `json:"installedUpdateId"`
						} `json:"agent"`
					} `json:"deviceUpdate"`
				} `json:"reported"`
			}
			if json.Unmarshal(tw, &doc) == nil {
				a := doc.Reported.DeviceUpdate.Agent
				if len(a.DeviceProperties) > 0 {
					d.DeviceProperties = map[string]string{}
					for k, v := range a.DeviceProperties {
						if str, ok := v.(string); ok {
							d.DeviceProperties[k] = str
						} else {
							b, _ := json.Marshal(v)
							d.DeviceProperties[k] = string(b)
						}
					}
				}
				d.State, d.InstalledUpdateID = a.State, a.InstalledUpdateID
				d.InstalledUpdate = updateText(a.InstalledUpdateID)
				d.Banks = doc.Reported.Banks
			}
		}
		d.Activity = activity(d, deps[d.Deployment])
		out = append(out, d)
	}
	return out
}

func (s *server) addDevice(w http.ResponseWriter, r *http.Request) {
	var req addRequest
	if err := decodeBody(r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	s.regMu.Lock()
	added, err := registerDevice(s.hub, req.DeviceID, req.X509Thumbprint)
	s.regMu.Unlock()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	status := http.StatusOK
	if added.Created {
		status = http.StatusCreated
	}
	s.log.Info("device registered", "device", req.DeviceID, "created", added.Created, "authentication", added.Authentication)
	writeAPI(w, status, s.withConnection(added))
}

func (s *server) renewKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := decodeBody(r, &struct{}{}); err != nil {
		writeAPIError(w, err)
		return
	}
	s.regMu.Lock()
	added, err := renewDeviceKey(s.hub, id)
	s.regMu.Unlock()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("device key renewed", "device", id)
	writeAPI(w, http.StatusOK, s.withConnection(added))
}

// withConnection adds where the device connects and what it trusts.
func (s *server) withConnection(added *deviceAdded) *deviceAdded {
	added.MQTT, added.TLS, added.CAFile, added.RootKeysFile = s.info.DeviceMQTT, s.info.TLS, s.info.CAFile, s.info.RootKeysFile
	return added
}

func (s *server) removeDevice(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := removeDevice(s.hub, id); err != nil {
		writeAPIError(w, err)
		return
	}
	s.log.Info("device removed", "device", id)
	writeAPI(w, http.StatusOK, deviceRemoved{DeviceID: id, Removed: true})
}

// removeDevice removes a registered device (404 for an unknown one).
func removeDevice(h *hub.Hub, id string) error {
	if err := h.RemoveDevice(id); err != nil {
		if errors.Is(err, hub.ErrUnknownDevice) {
			return &httpError{http.StatusNotFound, fmt.Errorf("device %q is not registered", id)}
		}
		return &httpError{http.StatusInternalServerError, fmt.Errorf("remove device %q: %w", id, err)}
	}
	return nil
}

// registerDevice registers id with a new random key; a device registered already is a
// conflict (its key is not shown again: renewDeviceKey makes a new one). With a thumbprint
// it registers an X.509 device instead (or finds it registered with that thumbprint).
func registerDevice(h *hub.Hub, id, thumbprint string) (*deviceAdded, error) {
	if err := checkDeviceID(id); err != nil {
		return nil, &httpError{http.StatusBadRequest, err}
	}
	if thumbprint != "" {
		return registerX509(h, id, thumbprint)
	}
	key, err := h.DeviceKey(id)
	switch {
	case err == nil && key == "":
		return nil, &httpError{http.StatusConflict, fmt.Errorf("device %q is registered with an X.509 certificate, not a SAS key", id)}
	case err == nil:
		return nil, &httpError{http.StatusConflict, fmt.Errorf("device %q is already registered; its key is not shown again (aduhub device renew-key %s makes a new one)", id, id)}
	case !errors.Is(err, hub.ErrUnknownDevice):
		return nil, &httpError{http.StatusInternalServerError, err}
	}
	added, err := setDeviceKey(h, id)
	if err != nil {
		return nil, err
	}
	added.Created = true
	return added, nil
}

// renewDeviceKey gives a SAS device a new random key, as IoT Hub's key regeneration does, and
// disconnects it: the old key no longer connects.
func renewDeviceKey(h *hub.Hub, id string) (*deviceAdded, error) {
	key, err := h.DeviceKey(id)
	switch {
	case errors.Is(err, hub.ErrUnknownDevice):
		return nil, &httpError{http.StatusNotFound, fmt.Errorf("device %q is not registered", id)}
	case err != nil:
		return nil, &httpError{http.StatusInternalServerError, err}
	case key == "":
		return nil, &httpError{http.StatusConflict, fmt.Errorf("device %q authenticates with an X.509 certificate: it has no key to renew", id)}
	}
	added, err := setDeviceKey(h, id)
	if err != nil {
		return nil, err
	}
	if err := h.Disconnect(id); err != nil && !errors.Is(err, hub.ErrNotConnected) {
		return nil, &httpError{http.StatusInternalServerError, fmt.Errorf("disconnect %q: %w", id, err)}
	}
	return added, nil
}

// setDeviceKey registers id with a new random SAS key.
func setDeviceKey(h *hub.Hub, id string) (*deviceAdded, error) {
	key := newKey()
	if err := h.RegisterDevice(id, key); err != nil {
		return nil, &httpError{http.StatusInternalServerError, err}
	}
	return &deviceAdded{DeviceID: id, HostName: h.HostName(), Authentication: "sas",
		ConnectionString: "HostName=" + h.HostName() + ";DeviceId=" + id + ";SharedAccessKey=" + key}, nil
}

// registerX509 registers id as an X.509 device with the thumbprint of its client certificate.
func registerX509(h *hub.Hub, id, thumbprint string) (*deviceAdded, error) {
	tp, err := hub.ParseThumbprint(thumbprint)
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, fmt.Errorf("x509 thumbprint: %w", err)}
	}
	added := &deviceAdded{DeviceID: id, HostName: h.HostName(), Authentication: "x509", X509Thumbprint: tp,
		ConnectionString: "HostName=" + h.HostName() + ";DeviceId=" + id + ";x509=true"}
	key, err := h.DeviceKey(id)
	switch {
	case errors.Is(err, hub.ErrUnknownDevice):
		if err := h.RegisterDeviceX509(id, tp); err != nil {
			return nil, &httpError{http.StatusInternalServerError, err}
		}
		added.Created = true
		return added, nil
	case err != nil:
		return nil, &httpError{http.StatusInternalServerError, err}
	case key != "":
		return nil, &httpError{http.StatusConflict, fmt.Errorf("device %q is registered with a SAS key, not an X.509 certificate (aduhub device remove %s first)", id, id)}
	}
	had, err := h.DeviceThumbprint(id)
	if err != nil {
		return nil, &httpError{http.StatusInternalServerError, err}
	}
	if had != tp {
		return nil, &httpError{http.StatusConflict, fmt.Errorf("device %q is registered with another X.509 certificate (thumbprint %s; aduhub device remove %s first)", id, had, id)}
	}
	return added, nil
}

// checkDeviceID applies IoT Hub's rules for device ids: up to 128 characters, ASCII letters,
// digits and - . % _ * ? ! ( ) , : = @ $ '.
func checkDeviceID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("invalid device id %q: 1 to 128 characters", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.%_*?!(),:=@$'", c)) {
			return fmt.Errorf("invalid device id %q: %q is not allowed (letters, digits and -.%%_*?!(),:=@$' are)", id, c)
		}
	}
	return nil
}

func (s *server) importUpdate(w http.ResponseWriter, r *http.Request) {
	var u *hub.Update
	var err error
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		u, err = s.importUpload(w, r)
	} else {
		u, err = s.importFromDir(r)
	}
	if err != nil {
		writeAPIError(w, importErr(err))
		return
	}
	s.log.Info("update imported", "update", updateIDText(u.UpdateID), "files", len(u.Files))
	writeAPI(w, http.StatusCreated, u)
}

// importErr gives an import's error its status.
func importErr(err error) error {
	var he *httpError
	if errors.As(err, &he) {
		return err
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, hub.ErrUpdateExists):
		status = http.StatusConflict
	case errors.Is(err, manifestgen.ErrInvalid), errors.Is(err, hub.ErrImportFiles), errors.Is(err, hub.ErrUnknownUpdate):
		status = http.StatusBadRequest
	case !isFSError(err):
		// Anything else Import refuses is about the manifest (e.g. JSON syntax).
		status = http.StatusBadRequest
	}
	return &httpError{status, fmt.Errorf("import: %w", err)}
}

// importFromDir imports an importRequest: files named inside the import folder.
func (s *server) importFromDir(r *http.Request) (*hub.Update, error) {
	var req importRequest
	if err := decodeBody(r, &req); err != nil {
		return nil, err
	}
	if s.importDir == nil {
		return nil, &httpError{http.StatusBadRequest, errors.New("import: this server has no import folder (aduhub serve --import-dir DIR): upload the files (aduhub import does)")}
	}
	for name, p := range req.Files {
		if !filepath.IsLocal(p) {
			return nil, &httpError{http.StatusBadRequest, fmt.Errorf("import: %s: %q is not a path inside the import folder (relative, without ..)", name, p)}
		}
	}
	return s.svc.ImportFrom([]byte(req.ImportManifest), s.importDir, req.Files)
}

// importUpload imports an upload: the import manifest, then the files, each staged in the
// data folder (uploads/) up to the size the manifest gives it, then imported from there.
func (s *server) importUpload(w http.ResponseWriter, r *http.Request) (*hub.Update, error) {
	r.Body = &progressDeadline{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: s.readIdle}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, fmt.Errorf("import upload: %w", err)}
	}
	manifest, m, err := readManifestPart(mr)
	if err != nil {
		return nil, err
	}
	sizes := hub.ImportFileSizes(m)
	root, done, err := hub.StageDir(filepath.Join(s.info.DataDir, uploadsDir))
	if err != nil {
		return nil, err
	}
	defer done()
	files := map[string]string{}
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, &httpError{http.StatusBadRequest, fmt.Errorf("import upload: %w", err)}
		}
		if err := stageUpload(root, p, sizes, files); err != nil {
			return nil, err
		}
	}
	// The upload is in: the import (hashes, signing) may take its time without a read
	// deadline cutting the connection before the answer.
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	return s.svc.ImportFrom(manifest, root, files)
}

// uploadsDir (in the data folder) holds the files of uploads in progress.
const uploadsDir = "uploads"

// readManifestPart reads the first part of an upload: the import manifest.
func readManifestPart(mr *multipart.Reader) ([]byte, *manifestgen.Manifest, error) {
	p, err := mr.NextPart()
	if err != nil {
		return nil, nil, &httpError{http.StatusBadRequest, fmt.Errorf("import upload: %w", err)}
	}
	defer p.Close()
	if p.FormName() != uploadManifestPart {
		return nil, nil, &httpError{http.StatusBadRequest, fmt.Errorf("import upload: the first part is %q, want %q", p.FormName(), uploadManifestPart)}
	}
	b, err := limitread.All(p, maxAPIBody)
	if errors.Is(err, limitread.ErrTooLarge) {
		return nil, nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Errorf("import manifest over %d bytes: not an import manifest", maxAPIBody)}
	}
	if err != nil {
		return nil, nil, &httpError{http.StatusBadRequest, fmt.Errorf("import upload: %w", err)}
	}
	m, err := parseImportManifest(b)
	if err != nil {
		return nil, nil, &httpError{http.StatusBadRequest, err}
	}
	return b, m, nil
}

// stageUpload writes a file part into root, refusing a file the manifest does not name, one
// given twice, and bytes beyond the size the manifest gives it; files gets its staged name.
func stageUpload(root *os.Root, p *multipart.Part, sizes map[string]int64, files map[string]string) error {
	defer p.Close()
	name := p.FileName()
	if p.FormName() != uploadFilePart || name == "" {
		return &httpError{http.StatusBadRequest, fmt.Errorf("import upload: part %q: want %q parts with a file name after %q", p.FormName(), uploadFilePart, uploadManifestPart)}
	}
	size, ok := sizes[name]
	if !ok {
		return &httpError{http.StatusBadRequest, fmt.Errorf("%w: %q is not in the import manifest", hub.ErrImportFiles, name)}
	}
	if _, dup := files[name]; dup {
		return &httpError{http.StatusBadRequest, fmt.Errorf("%w: %q is uploaded twice", hub.ErrImportFiles, name)}
	}
	staged := strconv.Itoa(len(files))
	f, err := root.OpenFile(staged, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(p, size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	switch {
	case isFSError(err):
		return err
	case err != nil:
		return &httpError{http.StatusBadRequest, fmt.Errorf("import upload of %s: %w", name, err)}
	case n > size:
		return &httpError{http.StatusBadRequest, fmt.Errorf("%w: %s: more bytes than its sizeInBytes in the import manifest, %d", hub.ErrImportFiles, name, size)}
	}
	files[name] = staged
	return nil
}

// parseImportManifest parses an import manifest, saying first whether it is JSON at all (an
// image given as the manifest is not).
func parseImportManifest(b []byte) (*manifestgen.Manifest, error) {
	if !json.Valid(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))) {
		_, err := manifestgen.Parse(b)
		return nil, fmt.Errorf("the import manifest is not JSON (%w); aduimport manifest create writes one", err)
	}
	m, err := manifestgen.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("import manifest: %w", err)
	}
	return m, nil
}

// progressDeadline lets an upload take as long as its bytes keep coming: each read may
// wait idle at most.
type progressDeadline struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (p *progressDeadline) Read(b []byte) (int, error) {
	_ = p.rc.SetReadDeadline(time.Now().Add(p.idle))
	return p.ReadCloser.Read(b)
}

func (s *server) deploy(w http.ResponseWriter, r *http.Request) {
	var req deployRequest
	if err := decodeBody(r, &req); err != nil {
		writeAPIError(w, err)
		return
	}
	d, err := s.svc.Deploy(req.UpdateID, req.Group)
	if d == nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, hub.ErrUnknownUpdate):
			status = http.StatusNotFound
			if near := s.updateIgnoringCase(req.UpdateID); near != "" {
				err = fmt.Errorf("%w (did you mean %s?)", err, near)
			}
		case errors.Is(err, hub.ErrNotDeployable), errors.Is(err, hub.ErrNoMatchingDevices):
			status = http.StatusConflict
		}
		writeAPIError(w, &httpError{status, fmt.Errorf("deploy %s: %w", updateIDText(req.UpdateID), err)})
		return
	}
	resp := deployResponse{}
	if err != nil {
		resp.Warning = err.Error()
	}
	st, serr := s.svc.Status(d.ID)
	if serr != nil {
		writeAPIError(w, serr)
		return
	}
	resp.Deployment = *st
	s.log.Info("deployed", "deployment", d.ID, "update", updateIDText(req.UpdateID), "devices", len(d.Devices))
	writeAPI(w, http.StatusCreated, resp)
}

// updateIgnoringCase returns the imported update whose id is uid but for upper and lower
// case, or "".
func (s *server) updateIgnoringCase(uid adu.UpdateID) string {
	for _, u := range s.svc.Updates() {
		if strings.EqualFold(updateIDText(u.UpdateID), updateIDText(uid)) {
			return updateIDText(u.UpdateID)
		}
	}
	return ""
}

func deploymentErr(id string, err error) error {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, hub.ErrUnknownDeployment):
		status = http.StatusNotFound
	case errors.Is(err, hub.ErrDeploymentCancelled), errors.Is(err, hub.ErrNoFailedDevices):
		status = http.StatusConflict
	}
	return &httpError{status, fmt.Errorf("deployment %s: %w", id, err)}
}

func (s *server) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	st, ok := s.statusAfter(w, id, s.svc.Cancel(id))
	if !ok {
		return
	}
	s.log.Info("deployment cancelled", "deployment", id)
	writeAPI(w, http.StatusOK, st)
}

// statusAfter returns the status of deployment id after an action on it that ended with err;
// when the action or the status failed it has answered with the error, and returns false.
func (s *server) statusAfter(w http.ResponseWriter, id string, err error) (*hub.DeploymentStatus, bool) {
	var st *hub.DeploymentStatus
	if err == nil {
		st, err = s.svc.Status(id)
	}
	if err != nil {
		writeAPIError(w, deploymentErr(id, err))
		return nil, false
	}
	return st, true
}

func (s *server) retry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	devs, err := s.svc.Retry(id)
	st, ok := s.statusAfter(w, id, err)
	if !ok {
		return
	}
	sort.Strings(devs)
	s.log.Info("deployment retried", "deployment", id, "devices", len(devs))
	writeAPI(w, http.StatusOK, retryResponse{Retried: nonNil(devs), Deployment: *st})
}

// updateIDText is provider/name/version, the form --update takes.
func updateIDText(u adu.UpdateID) string { return u.Provider + "/" + u.Name + "/" + u.Version }

// updateText turns an installedUpdateId (compact JSON text) into provider/name/version; text
// that is not one stays as it is.
func updateText(installedUpdateID string) string {
	if installedUpdateID == "" {
		return ""
	}
	u, err := adu.ParseInstalledUpdateID(installedUpdateID)
	if err != nil {
		return installedUpdateID
	}
	return updateIDText(u)
}

// parseUpdateID reads provider/name/version.
func parseUpdateID(s string) (adu.UpdateID, error) {
	p := strings.Split(s, "/")
	if len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
		return adu.UpdateID{}, fmt.Errorf("update id %q: want provider/name/version", s)
	}
	return adu.UpdateID{Provider: p[0], Name: p[1], Version: p[2]}, nil
}

// stateName names an agent state as the portal does.
func stateName(st *int) string {
	if st == nil {
		return ""
	}
	switch adu.State(*st) {
	case adu.StateIdle:
		return "Idle"
	case adu.StateDeploymentInProgress:
		return "DeploymentInProgress"
	case adu.StateFailed:
		return "Failed"
	}
	return fmt.Sprint(*st)
}

// agentBanks is aduagent's reported property aduflashBanks (agent.BanksReport; the hub does
// not import the agent): which bank runs and which one the bootloader tries next.
type agentBanks struct {
	Running      string `json:"running,omitempty"`
	Primary      string `json:"primary,omitempty"`
	Pending      string `json:"pending,omitempty"`
	AttemptsLeft int    `json:"attemptsLeft,omitempty"`
}
