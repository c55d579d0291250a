package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/bytesize"
)

// Remote log collection (the diagnosticInformation component of the deviceUpdateModel
// ;2/;3 models, as the Linux agent implements it): the service writes {operationId,
// storageSasUrl} into diagnosticInformation.service; the agent acknowledges it (200),
// collects the logs its own config names ([agent.diagnostics]: files, directories and
// commands such as journalctl; nothing named by the request), uploads each as a block blob
// <device>/<operationId>/<name> into the container of the SAS URL (Blob Storage's Put Blob),
// and reports {"resultCode":…,"operationId":…} in diagnosticInformation.agent. The request is
// hostile input: the operation id must be a plain name, the SAS URL an https URL (http only
// to a loopback address) with a token, and the bytes sent are bounded by the config.

// Defaults of [agent.diagnostics].
const (
	DefaultDiagnosticsMaxFileSize    = 1 << 20
	DefaultDiagnosticsMaxTotalSize   = 16 << 20
	DefaultDiagnosticsCommandTimeout = 30 * time.Second
	// maxDirFiles bounds the files one configured directory contributes (its newest).
	maxDirFiles = 32
	// blobVersion is the Blob Storage REST version of the uploads.
	blobVersion = "2021-08-06"
)

// Diagnostics is the [agent.diagnostics] table: what a log collection uploads.
type Diagnostics struct {
	// Files are log files, or directories whose regular files (the newest maxDirFiles) are
	// taken.
	Files []string `toml:"files"`
	// Commands map a name to an argv whose output (stdout and stderr) is uploaded as
	// <name>.txt, e.g. journal = ["journalctl", "-b", "--no-pager"].
	Commands map[string][]string `toml:"commands"`
	// MaxFileSize bounds each log: a longer one is cut to its last MaxFileSize bytes (the
	// newest), behind a first line saying how much was left out (default 1 MiB).
	MaxFileSize bytesize.Size `toml:"max_file_size"`
	// MaxTotalSize bounds one collection: the logs past it are left out, and logged (default
	// 16 MiB).
	MaxTotalSize bytesize.Size `toml:"max_total_size"`
	// CommandTimeout bounds each command (default 30s).
	CommandTimeout time.Duration `toml:"command_timeout"`
}

// configured tells whether the table names any log.
func (d *Diagnostics) configured() bool { return len(d.Files) > 0 || len(d.Commands) > 0 }

func (d *Diagnostics) withDefaults() Diagnostics {
	o := *d
	o.MaxFileSize = cmp.Or(o.MaxFileSize, DefaultDiagnosticsMaxFileSize)
	o.MaxTotalSize = cmp.Or(o.MaxTotalSize, DefaultDiagnosticsMaxTotalSize)
	o.CommandTimeout = cmp.Or(o.CommandTimeout, DefaultDiagnosticsCommandTimeout)
	return o
}

// logName is what a command name or an operation id may be: a blob path segment.
var logName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// check: files that are absolute paths, commands with a usable name and an argv.
func (d *Diagnostics) check() error {
	for i, f := range d.Files {
		if !filepath.IsAbs(f) {
			return cfgErr("diagnostics.files", "entry %d (%q) is not an absolute path", i, f)
		}
	}
	for name, argv := range d.Commands {
		if !logName.MatchString(name) {
			return cfgErr("diagnostics.commands."+name, "a name of letters, digits, '.', '_' or '-'")
		}
		if len(argv) == 0 || argv[0] == "" {
			return cfgErr("diagnostics.commands."+name, "empty (an argv such as [\"journalctl\", \"-b\", \"--no-pager\"])")
		}
	}
	if d.MaxFileSize < 0 || d.MaxTotalSize < 0 || d.CommandTimeout < 0 {
		return cfgErr("diagnostics", "max_file_size, max_total_size and command_timeout cannot be negative")
	}
	return nil
}

// diagnosticsError is a failed collection with the result code the service is told.
type diagnosticsError struct {
	code adu.DiagnosticsResult
	err  error
}

func (e *diagnosticsError) Error() string { return e.err.Error() }
func (e *diagnosticsError) Unwrap() error { return e.err }

func diagFail(code adu.DiagnosticsResult, format string, a ...any) error {
	return &diagnosticsError{code: code, err: fmt.Errorf(format, a...)}
}

// logFile is one collected log.
type logFile struct {
	name string // the blob name under <device>/<operationId>/
	data []byte
}

// collectLogs uploads the configured logs for req and returns the result code to report.
func (a *Agent) collectLogs(ctx context.Context, req adu.DiagnosticsRequest) (adu.DiagnosticsResult, error) {
	cfg := a.o.Diagnostics.withDefaults()
	dest, err := checkDiagnosticsRequest(req)
	if err != nil {
		return resultOf(err), err
	}
	if !cfg.configured() {
		return adu.DiagnosticsNoComponents, diagFail(adu.DiagnosticsNoComponents, "no logs configured ([agent.diagnostics] files or commands)")
	}
	logs := a.gatherLogs(ctx, cfg)
	if len(logs) == 0 {
		return adu.DiagnosticsNoLogsFound, diagFail(adu.DiagnosticsNoLogsFound, "none of the configured logs exists")
	}
	prefix := blobSegment(a.o.DeviceName) + "/" + req.OperationID + "/"
	for _, l := range logs {
		if err := a.putBlob(ctx, dest, prefix+l.name, l.data); err != nil {
			return resultOf(err), err
		}
	}
	return adu.DiagnosticsSuccess, nil
}

func resultOf(err error) adu.DiagnosticsResult {
	var de *diagnosticsError
	if errors.As(err, &de) {
		return de.code
	}
	return adu.DiagnosticsFailure
}

// checkDiagnosticsRequest refuses an operation id that is no plain name and a SAS URL that
// is not https (http only to a loopback address), names no container or carries no token.
func checkDiagnosticsRequest(req adu.DiagnosticsRequest) (*url.URL, error) {
	switch {
	case req.OperationID == "":
		return nil, diagFail(adu.DiagnosticsNoOperationID, "the request has no operationId")
	case !logName.MatchString(req.OperationID):
		return nil, diagFail(adu.DiagnosticsNoOperationID, "operationId %.40q is not a plain name (letters, digits, '.', '_', '-'; at most 128)", req.OperationID)
	case req.StorageSASURL == "":
		return nil, diagFail(adu.DiagnosticsNoSASCredential, "the request has no storageSasUrl")
	}
	u, err := url.Parse(req.StorageSASURL)
	switch {
	case err != nil:
		return nil, diagFail(adu.DiagnosticsBadCredential, "storageSasUrl does not parse")
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return nil, diagFail(adu.DiagnosticsBadCredential, "storageSasUrl is %s://%s: logs go over https only (http only to a loopback address)", u.Scheme, u.Host)
	case strings.Trim(u.Path, "/") == "":
		return nil, diagFail(adu.DiagnosticsBadCredential, "storageSasUrl names no container")
	case u.RawQuery == "" || u.User != nil || u.Fragment != "":
		return nil, diagFail(adu.DiagnosticsBadCredential, "storageSasUrl carries no SAS token (or carries user info or a fragment)")
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// blobSegment makes a name one plain blob path segment ("device" when nothing is left).
func blobSegment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if s := strings.Trim(string(b), "."); s != "" {
		return s
	}
	return "device"
}

// putBlob uploads data as the block blob name in the SAS URL's container (Put Blob).
func (a *Agent) putBlob(ctx context.Context, sas *url.URL, name string, data []byte) error {
	u := *sas
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), bytes.NewReader(data))
	if err != nil {
		return diagFail(adu.DiagnosticsBadCredential, "storageSasUrl: %v", err)
	}
	req.ContentLength = int64(len(data))
	req.Header.Set("x-ms-blob-type", "BlockBlob")
	req.Header.Set("x-ms-version", blobVersion)
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	resp, err := a.o.HTTP.Do(req)
	if err != nil {
		// The error text holds the URL and with it the SAS token: name the blob only.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return diagFail(adu.DiagnosticsUploadFailed, "uploading %s to %s: %v", name, sas.Host, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusCreated {
		return diagFail(adu.DiagnosticsUploadFailed, "uploading %s to %s: HTTP %s", name, sas.Host, resp.Status)
	}
	a.log.Info("log uploaded", "blob", path.Join(sas.Path, name), "bytes", len(data))
	return nil
}

// diagJob is a log collection running in its own goroutine.
type diagJob struct {
	opID   string
	cancel context.CancelFunc
	done   chan struct{}
}

func (j *diagJob) stop() {
	if j != nil {
		j.cancel()
		<-j.done
	}
}

// diagnosticsState is what Run keeps of the diagnosticInformation component.
type diagnosticsState struct {
	job     *diagJob
	lastAck int64
}

// onDiagnostics acts on the diagnosticInformation part of a desired document (models ;2 and
// ;3 only): a new $version is acknowledged (200, as the Linux agent does: the outcome goes
// into the report), and a request whose operation has not been collected yet starts a
// collection, replacing one still running.
func (a *Agent) onDiagnostics(ctx context.Context, doc []byte, st *diagnosticsState) {
	if a.o.ModelID != adu.ModelV2 && a.o.ModelID != adu.ModelV3 {
		return
	}
	d, err := adu.ParseDiagnosticsDesired(doc)
	if err != nil {
		a.log.Warn("ignoring a log collection request that does not parse", "err", err)
		return
	}
	if d.HasVersion && d.Version != st.lastAck && d.Request != nil {
		st.lastAck = d.Version
		if patch, err := (adu.Ack{Code: adu.AckAccepted, Version: d.Version, Component: adu.DiagnosticsComponent}).Patch(); err == nil {
			a.send(ctx, patch)
		}
	}
	req := d.Request
	if req == nil || (st.job != nil && st.job.opID == req.OperationID) {
		return
	}
	var done string
	a.view(func(r *Record) { done = r.LogCollection })
	if req.OperationID != "" && req.OperationID == done {
		return // collected before (this process or an earlier start)
	}
	st.job.stop()
	jctx, cancel := context.WithCancel(ctx)
	j := &diagJob{opID: req.OperationID, cancel: cancel, done: make(chan struct{})}
	st.job = j
	go func() {
		defer close(j.done)
		a.runLogCollection(jctx, *req)
	}()
}

// runLogCollection collects and uploads the logs for req and reports the outcome, unless it
// was stopped (a newer request, the agent stopping).
func (a *Agent) runLogCollection(ctx context.Context, req adu.DiagnosticsRequest) {
	a.log.Info("log collection", "operation", req.OperationID)
	result, err := a.collectLogs(ctx, req)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		a.log.Warn("log collection failed", "operation", req.OperationID, "resultCode", int(result), "err", err)
	}
	if req.OperationID != "" {
		if err := a.save(func(r *Record) { r.LogCollection = req.OperationID }); err != nil {
			a.log.Warn("recording the log collection", "err", err)
		}
	}
	if patch, err := adu.DiagnosticsReport(result, req.OperationID); err == nil {
		a.send(ctx, patch)
	}
}
