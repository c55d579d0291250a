package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/manifestgen"
)

// Errors of ImportURLs.
var (
	// ErrURLNotAllowed: an import URL that is not http(s), carries a user name, or names a
	// host the Fetcher may not reach.
	ErrURLNotAllowed = errkind.New(errkind.Input, "hub: import URL not allowed")
	// ErrImportManifest: the import manifest fetched is not the size or hash the import
	// request gives it.
	ErrImportManifest = errkind.New(errkind.Input, "hub: the import manifest is not the one the import request describes")
	// ErrDownload: a URL of an import could not be fetched.
	ErrDownload = errkind.New(errkind.Environment, "hub: import download failed")
)

// Fetcher downloads the files of an import from the URLs a client names, which makes the
// hub a client of whatever the URLs point at (server-side request forgery): it fetches
// only http and https URLs without a user name, on the hosts of Hosts (host or host:port,
// the port defaulting to the scheme's), follows no redirect, uses no proxy, and reads no
// more than the bytes the import manifest gives a file.
type Fetcher struct {
	Hosts []string
	// Client, if not nil, replaces the default client (no redirects, 10 s to connect, 30 s
	// for the answer's headers; the body as long as the context allows).
	Client *http.Client
}

// Check refuses a URL the Fetcher would not fetch.
func (f *Fetcher) Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrURLNotAllowed, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: %s://%s…: http(s) URLs without a user name only", ErrURLNotAllowed, u.Scheme, u.Host)
	}
	for _, h := range f.Hosts {
		if strings.EqualFold(hostPort(u), withPort(h, u.Scheme)) {
			return nil
		}
	}
	if len(f.Hosts) == 0 {
		return fmt.Errorf("%w: %s: this hub fetches import files from no host (aduhub serve --blob-host HOST[:PORT])", ErrURLNotAllowed, u.Host)
	}
	return fmt.Errorf("%w: %s is not one of the blob hosts %s", ErrURLNotAllowed, u.Host, strings.Join(f.Hosts, ", "))
}

// hostPort is u's host:port, the port defaulting to the scheme's.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	return withPort(u.Host, u.Scheme)
}

// withPort adds the scheme's default port to a host without one.
func withPort(h, scheme string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	port := "443"
	if scheme == "http" {
		port = "80"
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), port)
}

func (f *Fetcher) client() *http.Client {
	if f.Client != nil {
		return f.Client
	}
	return &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
	}
}

// fetch copies the body at raw into w, failing past limit bytes; it returns the bytes read.
func (f *Fetcher) fetch(ctx context.Context, raw string, w io.Writer, limit int64) (int64, error) {
	if err := f.Check(raw); err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrURLNotAllowed, err)
	}
	resp, err := f.client().Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: GET %s: %w", ErrDownload, redacted(req.URL), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%w: GET %s: %s", ErrDownload, redacted(req.URL), resp.Status)
	}
	n, err := io.Copy(w, io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return n, fmt.Errorf("%w: GET %s: %w", ErrDownload, redacted(req.URL), err)
	}
	return n, nil
}

// redacted is u without its query (a SAS), for messages and logs.
func redacted(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

// URLImport is an import whose files the hub fetches: the import manifest's URL, size and
// SHA-256 (base64), and the URL of each file it names.
type URLImport struct {
	ManifestURL    string
	ManifestSize   int64
	ManifestSHA256 string
	Files          map[string]string // file name → URL
}

// ImportURLs imports req as Import does, its files fetched with f into a new folder in
// stageDir (removed before it returns): the manifest first, which must have the size and
// SHA-256 req gives it (at most manifestgen.MaxManifestSize), then each file, no more bytes
// than the manifest gives it.
func (s *Service) ImportURLs(ctx context.Context, req URLImport, f *Fetcher, stageDir string) (*Update, error) {
	for _, raw := range append([]string{req.ManifestURL}, mapValues(req.Files)...) {
		if err := f.Check(raw); err != nil {
			return nil, err
		}
	}
	manifest, m, err := fetchManifest(ctx, req, f)
	if err != nil {
		return nil, err
	}
	if err := checkImportFiles(m, req.Files); err != nil {
		return nil, err
	}
	root, done, err := StageDir(stageDir)
	if err != nil {
		return nil, err
	}
	defer done()
	staged, err := fetchFiles(ctx, root, m, req.Files, f)
	if err != nil {
		return nil, err
	}
	return s.ImportFrom(manifest, root, staged)
}

// StageDir makes a new folder in parent (made if missing) for the files of one import and
// opens it as an os.Root; done closes and removes it.
func StageDir(parent string) (root *os.Root, done func(), err error) {
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(parent, "import-")
	if err != nil {
		return nil, nil, err
	}
	if root, err = os.OpenRoot(dir); err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return root, func() { root.Close(); os.RemoveAll(dir) }, nil
}

// fetchManifest fetches and parses the import manifest of req.
func fetchManifest(ctx context.Context, req URLImport, f *Fetcher) ([]byte, *manifestgen.Manifest, error) {
	if req.ManifestSize < 1 || req.ManifestSize > manifestgen.MaxManifestSize {
		return nil, nil, fmt.Errorf("%w: sizeInBytes %d: from 1 to %d", ErrImportManifest, req.ManifestSize, manifestgen.MaxManifestSize)
	}
	var buf bytes.Buffer
	n, err := f.fetch(ctx, req.ManifestURL, &buf, req.ManifestSize)
	if err != nil {
		return nil, nil, fmt.Errorf("import manifest: %w", err)
	}
	sum := sha256.Sum256(buf.Bytes())
	switch {
	case n != req.ManifestSize:
		return nil, nil, fmt.Errorf("%w: %d bytes (or more), the request says %d", ErrImportManifest, n, req.ManifestSize)
	case base64.StdEncoding.EncodeToString(sum[:]) != req.ManifestSHA256:
		return nil, nil, fmt.Errorf("%w: its SHA-256 is not the request's", ErrImportManifest)
	}
	m, err := manifestgen.Parse(buf.Bytes())
	if err != nil {
		return nil, nil, err
	}
	return buf.Bytes(), m, nil
}

// fetchFiles fetches each file m names from its URL into root, refusing one longer than m
// says; it returns the file names mapped to their names in root.
func fetchFiles(ctx context.Context, root *os.Root, m *manifestgen.Manifest, urls map[string]string, f *Fetcher) (map[string]string, error) {
	staged := map[string]string{}
	for file, size := range ImportFileSizes(m) {
		name := strconv.Itoa(len(staged))
		out, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, err
		}
		n, err := f.fetch(ctx, urls[file], out, size)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if n > size {
			return nil, fmt.Errorf("%w: %s: more bytes than its sizeInBytes in the import manifest, %d", ErrImportFiles, file, size)
		}
		staged[file] = name
	}
	return staged, nil
}

// ImportFileSizes maps the files and related files of m to their sizes.
func ImportFileSizes(m *manifestgen.Manifest) map[string]int64 {
	sizes := map[string]int64{}
	for _, f := range m.Files {
		sizes[f.Filename] = f.SizeInBytes
		for _, r := range f.RelatedFiles {
			sizes[r.Filename] = r.SizeInBytes
		}
	}
	return sizes
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
