package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"

	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/manifestgen"
)

// DefaultAPIVersion is the current stable version of the Device Update data-plane API.
const DefaultAPIVersion = "2022-10-01"

// Scope is the OAuth scope of the Device Update data-plane API.
const Scope = "https://api.adu.microsoft.com/.default"

// defaultPoll is how often Wait asks about an operation when the service says nothing;
// maxPoll the longest it waits whatever the service says.
const (
	defaultPoll = 5 * time.Second
	maxPoll     = time.Minute
)

var (
	// ErrUpdateExists: the update was imported before (the service's UpdateAlreadyExists).
	ErrUpdateExists = errkind.New(errkind.Exists, "publish: the update exists already in this Device Update instance")
	// ErrImportFailed matches an *OperationError: the import operation ended Failed.
	ErrImportFailed = errkind.New(errkind.Input, "publish: import failed")
	// ErrEndpoint: the endpoint is not an https:// URL (http:// only to a loopback address).
	ErrEndpoint = errkind.New(errkind.Usage, "publish: bad endpoint")
	// ErrForeignLocation: the service named an operation on another host, where the bearer
	// token is not sent.
	ErrForeignLocation = errkind.New(errkind.Environment, "publish: operation location on another host")
	// ErrAPI matches an *APIError: the service answered a request with an error status.
	ErrAPI = errkind.New(errkind.Cause, "publish: Device Update request failed")
)

// updateExistsCode is the error code of the service for an update imported before.
const updateExistsCode = "UpdateAlreadyExists"

// ImportItem is one element of the body of updates:import.
type ImportItem struct {
	ImportManifest ManifestRef `json:"importManifest"`
	FriendlyName   string      `json:"friendlyName,omitempty"`
	Files          []FileRef   `json:"files"`
}

// ManifestRef is where the service reads the import manifest, and what it must be.
type ManifestRef struct {
	URL         string            `json:"url"`
	SizeInBytes int64             `json:"sizeInBytes"`
	Hashes      map[string]string `json:"hashes"`
}

// FileRef is where the service reads one file the import manifest names.
type FileRef struct {
	Filename string `json:"filename"`
	URL      string `json:"url"`
}

// Operation statuses.
const (
	StatusNotStarted = "NotStarted"
	StatusRunning    = "Running"
	StatusSucceeded  = "Succeeded"
	StatusFailed     = "Failed"
)

// Operation is an import operation as GET …/updates/operations/{id} returns it.
type Operation struct {
	OperationID        string        `json:"operationId"`
	Status             string        `json:"status"`
	Update             *UpdateInfo   `json:"update,omitempty"`
	ResourceLocation   string        `json:"resourceLocation,omitempty"`
	Error              *ServiceError `json:"error,omitempty"`
	TraceID            string        `json:"traceId,omitempty"`
	LastActionDateTime string        `json:"lastActionDateTime"`
	CreatedDateTime    string        `json:"createdDateTime"`
	ETag               string        `json:"etag,omitempty"`
}

// UpdateInfo names an update.
type UpdateInfo struct {
	UpdateID     manifestgen.UpdateID `json:"updateId"`
	Description  string               `json:"description,omitempty"`
	FriendlyName string               `json:"friendlyName,omitempty"`
}

// ServiceError is the service's error object, in operations and error responses.
type ServiceError struct {
	Code             string         `json:"code"`
	Message          string         `json:"message"`
	Target           string         `json:"target,omitempty"`
	Details          []ServiceError `json:"details,omitempty"`
	InnerError       *InnerError    `json:"innererror,omitempty"`
	OccurredDateTime string         `json:"occurredDateTime,omitempty"`
}

// InnerError is more specific information about a ServiceError.
type InnerError struct {
	Code        string      `json:"code"`
	Message     string      `json:"message,omitempty"`
	ErrorDetail string      `json:"errorDetail,omitempty"`
	InnerError  *InnerError `json:"innerError,omitempty"`
}

// ErrorResponse is the body of an error answer.
type ErrorResponse struct {
	Error ServiceError `json:"error"`
}

// String is the error with every detail and inner error: "CODE: message (target) [inner
// CODE: message: detail] {detail …}".
func (e *ServiceError) String() string {
	var b strings.Builder
	b.WriteString(e.Code + ": " + e.Message)
	if e.Target != "" {
		b.WriteString(" (target " + e.Target + ")")
	}
	for in := e.InnerError; in != nil; in = in.InnerError {
		b.WriteString("; inner " + in.Code)
		for _, s := range []string{in.Message, in.ErrorDetail} {
			if s != "" {
				b.WriteString(": " + s)
			}
		}
	}
	for _, d := range e.Details {
		b.WriteString("; detail " + d.String())
	}
	return b.String()
}

// codes lists e's code and those of its details and inner errors.
func (e *ServiceError) codes() []string {
	out := []string{e.Code}
	for in := e.InnerError; in != nil; in = in.InnerError {
		out = append(out, in.Code)
	}
	for _, d := range e.Details {
		out = append(out, d.codes()...)
	}
	return out
}

// says reports whether e, a detail or an inner error has code.
func (e *ServiceError) says(code string) bool {
	for _, c := range e.codes() {
		if strings.EqualFold(c, code) {
			return true
		}
	}
	return false
}

// OperationError is an import operation that ended Failed.
type OperationError struct {
	Op *Operation
}

func (e *OperationError) Error() string {
	msg := "import operation " + e.Op.OperationID + " failed"
	if e.Op.Error != nil {
		msg += ": " + e.Op.Error.String()
	}
	if e.Op.TraceID != "" {
		msg += " (trace id " + e.Op.TraceID + ")"
	}
	return msg
}

// Is matches ErrImportFailed, and ErrUpdateExists when the service said so.
func (e *OperationError) Is(target error) bool {
	return target == ErrImportFailed || target == ErrUpdateExists && e.Op.Error != nil && e.Op.Error.says(updateExistsCode)
}

// ErrorKind: the service refused the update (Input), or has it already (Exists).
func (e *OperationError) ErrorKind() errkind.Kind {
	if e.Is(ErrUpdateExists) {
		return errkind.Exists
	}
	return errkind.Input
}

// APIError is an error status answered to a request, with the service's error object.
type APIError struct {
	Method, Path string // the request, without host and query
	Status       int
	Err          *ServiceError // nil if the body was not an error object
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Status, http.StatusText(e.Status))
	if e.Err != nil {
		msg += ": " + e.Err.String()
	}
	return msg
}

// Is matches ErrAPI, and ErrUpdateExists when the service said so.
func (e *APIError) Is(target error) bool {
	return target == ErrAPI || target == ErrUpdateExists && e.Err != nil && e.Err.says(updateExistsCode)
}

// ErrorKind: a refused request (400, 409, 413, 422) is about the input; anything else
// (401, 403, 404, 429, 5xx) about the environment: credentials, roles, names, the service.
func (e *APIError) ErrorKind() errkind.Kind {
	switch {
	case e.Is(ErrUpdateExists):
		return errkind.Exists
	case e.Status == http.StatusBadRequest || e.Status == http.StatusConflict ||
		e.Status == http.StatusRequestEntityTooLarge || e.Status == http.StatusUnprocessableEntity:
		return errkind.Input
	}
	return errkind.Environment
}

// ServiceOptions tune a Service. Zero values take the defaults.
type ServiceOptions struct {
	APIVersion string // DefaultAPIVersion
	// Client is azcore's: retries (429 and 503 honour Retry-After), transport, logging.
	Client policy.ClientOptions
	// PollInterval is how often Wait asks when the service gives no Retry-After (5 s).
	PollInterval time.Duration
}

// Service is one Device Update instance's data-plane API.
type Service struct {
	base       *url.URL // the endpoint
	instance   string
	apiVersion string
	poll       time.Duration
	pl         runtime.Pipeline
}

// NewService is the API of instance at endpoint (https://ACCOUNT.api.adu.microsoft.com)
// with cred's bearer tokens for Scope. A plain http:// endpoint is refused unless its host
// is a loopback address (aduhub on this machine).
func NewService(endpoint, instance string, cred azcore.TokenCredential, o *ServiceOptions) (*Service, error) {
	if o == nil {
		o = &ServiceOptions{}
	}
	base, err := url.Parse(endpoint)
	if err != nil || base.Host == "" || (base.Path != "" && base.Path != "/") || base.RawQuery != "" {
		return nil, fmt.Errorf("%w: %q: want https://ACCOUNT.api.adu.microsoft.com", ErrEndpoint, endpoint)
	}
	insecure := base.Scheme == "http" && isLoopback(base.Hostname())
	if base.Scheme != "https" && !insecure {
		return nil, fmt.Errorf("%w: %q: https only (plain http only to a loopback address): a bearer token must not cross a network in the clear", ErrEndpoint, endpoint)
	}
	if instance == "" {
		return nil, fmt.Errorf("%w: no instance", ErrEndpoint)
	}
	base.Path = ""
	s := &Service{base: base, instance: instance, apiVersion: o.APIVersion, poll: o.PollInterval}
	if s.apiVersion == "" {
		s.apiVersion = DefaultAPIVersion
	}
	if s.poll <= 0 {
		s.poll = defaultPoll
	}
	bearer := runtime.NewBearerTokenPolicy(cred, []string{Scope}, &policy.BearerTokenOptions{InsecureAllowCredentialWithHTTP: insecure})
	s.pl = runtime.NewPipeline("aduflash-publish", "v1", runtime.PipelineOptions{
		PerRetry:               []policy.Policy{bearer},
		AllowedHeaders:         []string{"Operation-Location", "Retry-After"},
		AllowedQueryParameters: []string{"api-version"},
	}, &o.Client)
	return s, nil
}

// isLoopback reports whether host is localhost or a loopback IP address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// url is the endpoint's URL of the instance's path p, with the api-version.
func (s *Service) url(p ...string) string {
	u := *s.base
	segs := append([]string{"deviceUpdate", url.PathEscape(s.instance)}, p...)
	u.RawPath = "/" + strings.Join(segs, "/")
	u.Path, _ = url.PathUnescape(u.RawPath)
	u.RawQuery = url.Values{"api-version": {s.apiVersion}}.Encode()
	return u.String()
}

// do sends a request with the JSON body (nil: none) and returns the answer if its status
// is one of ok, else an *APIError.
func (s *Service) do(ctx context.Context, method, rawURL string, body any, ok ...int) (*http.Response, error) {
	req, err := runtime.NewRequest(ctx, method, rawURL)
	if err != nil {
		return nil, err
	}
	req.Raw().Header.Set("Accept", "application/json")
	if body != nil {
		if err := runtime.MarshalAsJSON(req, body); err != nil {
			return nil, err
		}
	}
	resp, err := s.pl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, req.Raw().URL.Path, err)
	}
	if runtime.HasStatusCode(resp, ok...) {
		return resp, nil
	}
	apiErr := &APIError{Method: method, Path: req.Raw().URL.Path, Status: resp.StatusCode}
	var er ErrorResponse
	if b, err := runtime.Payload(resp); err == nil && json.Unmarshal(b, &er) == nil && er.Error.Code != "" {
		apiErr.Err = &er.Error
	}
	return nil, apiErr
}

// UpdateExists reports whether the instance has the update id.
func (s *Service) UpdateExists(ctx context.Context, id manifestgen.UpdateID) (bool, error) {
	resp, err := s.do(ctx, http.MethodGet, s.url("updates", "providers", url.PathEscape(id.Provider), "names", url.PathEscape(id.Name),
		"versions", url.PathEscape(id.Version)), nil, http.StatusOK)
	var apiErr *APIError
	if errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return true, nil
}

// Import starts the import of items and returns the operation's URL.
func (s *Service) Import(ctx context.Context, items []ImportItem) (string, error) {
	resp, err := s.do(ctx, http.MethodPost, s.url("updates:import"), items, http.StatusAccepted)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return s.location(resp.Header.Get("Operation-Location"))
}

// location resolves an Operation-Location against the endpoint; it must stay on the
// endpoint's scheme and host, where the bearer token may go.
func (s *Service) location(loc string) (string, error) {
	if loc == "" {
		return "", fmt.Errorf("%w: the import was accepted without an Operation-Location", ErrForeignLocation)
	}
	u, err := s.base.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %w", ErrForeignLocation, loc, err)
	}
	if u.Scheme != s.base.Scheme || !strings.EqualFold(u.Host, s.base.Host) {
		return "", fmt.Errorf("%w: %q is not on %s://%s", ErrForeignLocation, loc, s.base.Scheme, s.base.Host)
	}
	return u.String(), nil
}

// Operation returns the operation at loc (an Import result) and how long the service asks
// to wait before asking again (0: it did not say).
func (s *Service) Operation(ctx context.Context, loc string) (*Operation, time.Duration, error) {
	resp, err := s.do(ctx, http.MethodGet, loc, nil, http.StatusOK)
	if err != nil {
		return nil, 0, err
	}
	var op Operation
	if err := runtime.UnmarshalAsJSON(resp, &op); err != nil {
		return nil, 0, fmt.Errorf("operation %s: %w", loc, err)
	}
	var after time.Duration
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		after = min(time.Duration(secs)*time.Second, maxPoll)
	}
	return &op, after, nil
}

// Wait polls the operation at loc until it ends, calling seen (if not nil) with each
// answer. A Failed operation is returned with an *OperationError.
func (s *Service) Wait(ctx context.Context, loc string, seen func(*Operation)) (*Operation, error) {
	for {
		op, after, err := s.Operation(ctx, loc)
		if err != nil {
			return nil, err
		}
		if seen != nil {
			seen(op)
		}
		switch op.Status {
		case StatusSucceeded:
			return op, nil
		case StatusFailed:
			return op, &OperationError{Op: op}
		}
		if after <= 0 {
			after = s.poll
		}
		t := time.NewTimer(after)
		select {
		case <-ctx.Done():
			t.Stop()
			return op, ctx.Err()
		case <-t.C:
		}
	}
}
