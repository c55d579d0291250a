package manifestgen

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// Spec is what Build makes a manifest from; it mirrors the arguments of
// `az iot du update init v5`.
type Spec struct {
	UpdateID    UpdateID
	Description string
	// IsDeployable nil or true: deployable (not written); false: written as false.
	IsDeployable  *bool
	Compatibility []Compatibility
	Steps         []StepSpec
	Files         []FileSpec
}

// DefaultInstalledCriteria is what az (and Build) put in handlerProperties.installedCriteria
// when a step for one of CriteriaHandlers has none.
const DefaultInstalledCriteria = "1.0"

// CriteriaHandlers are the handlers that need handlerProperties.installedCriteria.
var CriteriaHandlers = []string{"microsoft/swupdate:1", "microsoft/swupdate:2", "microsoft/apt:1"}

// Meter is told about the bytes hashed (a progress bar). *progress.Bar of the CLIs is one.
type Meter interface {
	Reader(io.Reader) io.Reader
	Finish()
}

// Option adjusts Build.
type Option func(*options)

type options struct {
	created     time.Time
	concurrency int
	meter       func(total int64) Meter
}

// WithCreated sets createdDateTime (default: now). It is written in UTC to the second, as
// az does.
func WithCreated(t time.Time) Option { return func(o *options) { o.created = t } }

// WithConcurrency bounds how many files are hashed at once (default: the number of CPUs,
// at most 4).
func WithConcurrency(n int) Option { return func(o *options) { o.concurrency = n } }

// WithProgress makes Build call meter once with the total size of all files (from their
// directory entries) and read every file through the returned Meter. meter may return nil.
func WithProgress(meter func(total int64) Meter) Option {
	return func(o *options) { o.meter = meter }
}

// HashBufferSize is the read size used when hashing: large reads keep the per-call
// overhead far below SHA-256's own cost.
const HashBufferSize = 1 << 20

// Build assembles the import manifest that spec describes and hashes its files (each in one
// streaming pass; several files concurrently). Steps without Files get the base names of all
// files; swupdate and apt steps without installedCriteria get "1.0", and each such default
// is returned as a warning. The manifest is validated twice: before hashing (with the sizes
// from the file system, so that a bad spec fails at once) and after; violations are returned
// as a *ValidationError (errors.Is ErrInvalid) together with the manifest. Errors reading
// files are returned as they are.
func Build(ctx context.Context, spec Spec, opts ...Option) (*Manifest, []string, error) {
	o := newOptions(opts)
	m := newManifest(spec, o.created)
	if err := addFiles(m, spec.Files); err != nil {
		return nil, nil, err
	}
	warnings := addSteps(m, spec.Steps)
	if err := check(m); err != nil {
		return m, warnings, err
	}
	if err := hashFiles(ctx, fileJobs(m, spec.Files), o); err != nil {
		return nil, warnings, err
	}
	if err := check(m); err != nil {
		return m, warnings, err
	}
	return m, warnings, nil
}

func newOptions(opts []Option) options {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.created.IsZero() {
		o.created = time.Now()
	}
	if o.concurrency <= 0 {
		o.concurrency = min(runtime.GOMAXPROCS(0), 4)
	}
	return o
}

// newManifest returns the manifest of spec without files and steps.
func newManifest(spec Spec, created time.Time) *Manifest {
	m := &Manifest{
		UpdateID:        spec.UpdateID,
		Description:     spec.Description,
		Compatibility:   spec.Compatibility,
		CreatedDateTime: created.UTC().Format("2006-01-02T15:04:05Z"),
		ManifestVersion: ManifestVersion,
	}
	if spec.IsDeployable != nil && !*spec.IsDeployable {
		f := false
		m.IsDeployable = &f
	}
	if m.Compatibility == nil {
		m.Compatibility = []Compatibility{}
	}
	return m
}

// placeholderHash stands for a file's hash until hashFiles has it.
var placeholderHash = base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))

// addFiles adds the files and their related files with the sizes their directory entries
// give and a placeholder hash, so that the manifest can be validated before any is read.
func addFiles(m *Manifest, files []FileSpec) error {
	for _, fs := range files {
		size, err := statFile(fs.Path)
		if err != nil {
			return err
		}
		f := File{
			Filename:    filepath.Base(fs.Path),
			SizeInBytes: size,
			Hashes:      Hashes{"sha256": placeholderHash},
			Properties:  fs.Properties,
		}
		if fs.DownloadHandler != "" {
			f.DownloadHandler = &DownloadHandler{ID: fs.DownloadHandler}
		}
		for _, rs := range fs.Related {
			size, err := statFile(rs.Path)
			if err != nil {
				return err
			}
			f.RelatedFiles = append(f.RelatedFiles, RelatedFile{
				Filename:    filepath.Base(rs.Path),
				SizeInBytes: size,
				Hashes:      Hashes{"sha256": placeholderHash},
				Properties:  rs.Properties,
			})
		}
		m.Files = append(m.Files, f)
	}
	return nil
}

// statFile returns the size of the file at path, which must not be a directory.
func statFile(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if fi.IsDir() {
		return 0, fmt.Errorf("%s: is a directory", path)
	}
	return fi.Size(), nil
}

// addSteps adds the steps. A step without files gets every file; a step whose handler needs
// installedCriteria gets the default, with a warning.
func addSteps(m *Manifest, steps []StepSpec) (warnings []string) {
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Filename)
	}
	m.Instructions.Steps = []Step{}
	for i, ss := range steps {
		st := Step{Description: ss.Description}
		if ss.UpdateID != nil {
			id := *ss.UpdateID
			st.Type, st.UpdateID = StepReference, &id
		} else {
			st.Type, st.Handler = StepInline, ss.Handler
			st.Files = ss.Files
			if st.Files == nil {
				st.Files = append([]string(nil), names...)
			}
			st.HandlerProperties = ss.Properties
			if _, ok := st.HandlerProperties.Get("installedCriteria"); needsCriteria(st.Handler) && !ok {
				st.HandlerProperties = st.HandlerProperties.With("installedCriteria", json.RawMessage(`"`+DefaultInstalledCriteria+`"`))
				warnings = append(warnings, fmt.Sprintf("step %d: handler %s needs handlerProperties.installedCriteria; using the default %q (set it with properties='{\"installedCriteria\":\"…\"}')", i+1, st.Handler, DefaultInstalledCriteria))
			}
		}
		m.Instructions.Steps = append(m.Instructions.Steps, st)
	}
	return warnings
}

// fileJob is one file to hash and the manifest entry its size and hash go to.
type fileJob struct {
	path   string
	size   *int64
	hashes *Hashes
}

// fileJobs lists the files of m (as addFiles made them from files) and their related files.
func fileJobs(m *Manifest, files []FileSpec) []fileJob {
	var jobs []fileJob
	for i := range m.Files {
		f := &m.Files[i]
		jobs = append(jobs, fileJob{files[i].Path, &f.SizeInBytes, &f.Hashes})
		for j := range f.RelatedFiles {
			r := &f.RelatedFiles[j]
			jobs = append(jobs, fileJob{files[i].Related[j].Path, &r.SizeInBytes, &r.Hashes})
		}
	}
	return jobs
}

// hashFiles hashes the files, o.concurrency at a time, into their manifest entries. The
// first failure cancels the others and is returned.
func hashFiles(ctx context.Context, jobs []fileJob, o options) error {
	var meter Meter
	if o.meter != nil {
		var total int64
		for _, jb := range jobs {
			total += *jb.size
		}
		meter = o.meter(total)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	for k, jb := range jobs {
		wg.Go(func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[k] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			size, sha, err := hashFile(ctx, jb.path, meter)
			if err != nil {
				errs[k] = err
				cancel()
				return
			}
			*jb.size, *jb.hashes = size, Hashes{"sha256": sha}
		})
	}
	wg.Wait()
	if meter != nil {
		meter.Finish()
	}
	return firstFailure(errs)
}

// firstFailure returns the first error that is not a cancellation (which the failure
// itself may have caused, wrapped with a file's name), else the first error.
func firstFailure(errs []error) error {
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func needsCriteria(handler string) bool {
	for _, h := range CriteriaHandlers {
		if h == handler {
			return true
		}
	}
	return false
}

// check marshals m and validates the bytes.
func check(m *Manifest) error {
	data, err := Marshal(m)
	if err != nil {
		return err
	}
	if vs := Validate(data); len(vs) > 0 {
		return &ValidationError{Violations: vs}
	}
	return nil
}

func hashFile(ctx context.Context, path string, meter Meter) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	var r io.Reader = f
	if meter != nil {
		r = meter.Reader(r)
	}
	size, sum, err := hashStream(ctx, r)
	if err != nil {
		return 0, "", fmt.Errorf("%s: %w", path, err)
	}
	return size, sum, nil
}

// HashReader reads r to its end in one pass and returns the number of bytes and the
// standard base64 of their SHA-256: the sizeInBytes and hashes.sha256 of a manifest file.
func HashReader(r io.Reader) (size int64, sha256b64 string, err error) {
	return hashStream(context.Background(), r)
}

func hashStream(ctx context.Context, r io.Reader) (int64, string, error) {
	h := sha256.New()
	buf := make([]byte, HashBufferSize)
	var size int64
	for {
		if err := ctx.Err(); err != nil {
			return 0, "", err
		}
		n, err := io.ReadFull(r, buf)
		h.Write(buf[:n])
		size += int64(n)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return 0, "", err
		}
	}
	return size, base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}
