// Package journal is the agent's crash-safe record of a deployment in
// progress: one small JSON document in one file, replaced atomically.
//
// A Save either leaves the previous record or the new one on disk, whatever
// instant the power is cut: the record is written to a temporary file in the
// same folder, the file is fsynced, renamed over the journal file, and the
// folder is fsynced (on Linux; elsewhere the folder sync is a no-op). When Save
// returns nil the new record survives a power cut.
//
// The file carries a format version, the payload length and a CRC-32C of the
// payload, so a torn or corrupted file is reported as ErrCorrupt (a
// *CorruptError naming the file and the defect) instead of being half-parsed.
// What to do then is the caller's decision; the agent treats it as "no
// journal, but the spare slot may hold anything" and re-verifies.
//
// File format (version 1): one ASCII header line, then the payload bytes:
//
//	aduflash-journal v1 crc32c=<8 lowercase hex digits> len=<decimal>\n
//	<len bytes of JSON>
//
// The header must be exactly in this canonical form, the file must end right
// after the payload, the CRC-32C (Castagnoli) is over the payload only, and the
// payload must be valid JSON.
//
// Leftover temporary files (<name>.tmp-*) from an interrupted Save are never
// read; the next Save or Clear removes them.
//
// A Journal serialises its own Save, Load and Clear calls with a mutex. It
// does not lock against other processes or other Journal values opened on the
// same folder and name: open one Journal per journal file.
package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/aduflash/aduflash/internal/atomicfile"
	"github.com/aduflash/aduflash/internal/errkind"
)

const (
	// FormatVersion is the version written in, and accepted from, the header.
	FormatVersion = 1
	// DefaultName is the journal file name inside the folder given to Open.
	DefaultName = "journal"
	// DefaultMaxSize is the default limit on the journal file size in bytes.
	DefaultMaxSize = 1 << 20

	magic     = "aduflash-journal"
	tempInfix = ".tmp-"
	// maxHeader bounds the header line (the longest valid one is 60 bytes).
	maxHeader = 96
)

// ErrCorrupt matches (errors.Is) every *CorruptError returned by Load.
var ErrCorrupt = errkind.New(errkind.Input, "journal: corrupt")

// CorruptError reports a journal file that exists but cannot be trusted:
// torn, truncated, bit-flipped, of another format version, not JSON, or JSON
// that does not decode into the value given to Load.
type CorruptError struct {
	Path   string // the journal file
	Reason string // what was wrong
}

func (e *CorruptError) Error() string {
	return "journal: " + e.Path + ": corrupt: " + e.Reason
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// ErrorKind says that a journal that cannot be trusted is a verdict on the input.
func (e *CorruptError) ErrorKind() errkind.Kind { return errkind.Input }

// Journal is one journal file in one folder. Its methods are safe for
// concurrent use.
type Journal struct {
	mu      sync.Mutex
	fs      FS
	dir     string
	name    string
	path    string
	maxSize int64
}

// Option configures Open.
type Option func(*config)

type config struct {
	fs      FS
	name    string
	maxSize int64
}

// WithFS replaces the file system operations (default: OSFS()).
func WithFS(f FS) Option { return func(c *config) { c.fs = f } }

// WithName sets the journal file name inside the folder (default
// DefaultName). It must be a plain file name, not a path.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithMaxSize sets the largest journal file, header included, that Save
// writes and Load reads (default DefaultMaxSize). A larger file is ErrCorrupt.
func WithMaxSize(n int64) Option { return func(c *config) { c.maxSize = n } }

// Open returns the journal in dir, creating the folder (mode 0700) if it does
// not exist. It does not read the journal file.
func Open(dir string, opts ...Option) (*Journal, error) {
	c := config{fs: OSFS(), name: DefaultName, maxSize: DefaultMaxSize}
	for _, o := range opts {
		o(&c)
	}
	if dir == "" {
		return nil, errors.New("journal: empty folder name")
	}
	if c.fs == nil {
		return nil, errors.New("journal: nil FS")
	}
	if c.name == "" || c.name == "." || c.name == ".." || strings.ContainsAny(c.name, `/\`) || c.name != filepath.Base(c.name) {
		return nil, fmt.Errorf("journal: invalid file name %q: want a plain file name", c.name)
	}
	if c.maxSize < maxHeader+2 {
		return nil, fmt.Errorf("journal: max size %d too small", c.maxSize)
	}
	if err := c.fs.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("journal: create folder: %w", err)
	}
	return &Journal{
		fs:      c.fs,
		dir:     dir,
		name:    c.name,
		path:    filepath.Join(dir, c.name),
		maxSize: c.maxSize,
	}, nil
}

// Path returns the journal file's path.
func (j *Journal) Path() string { return j.path }

// Load reads the journal into v (a non-nil pointer, filled as by
// json.Unmarshal). It returns found=false and a nil error when there is no
// journal file, and a *CorruptError (errors.Is(err, ErrCorrupt)) when the file
// exists but is invalid; other errors are I/O errors. On a decode error v may
// have been partly filled.
func (j *Journal) Load(v any) (found bool, err error) {
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return false, fmt.Errorf("journal: Load needs a non-nil pointer, got %T", v)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	data, err := j.fs.ReadFile(j.path, j.maxSize)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("journal: read %s: %w", j.path, err)
	}
	if int64(len(data)) > j.maxSize {
		return false, &CorruptError{Path: j.path, Reason: fmt.Sprintf("file larger than the %d-byte limit", j.maxSize)}
	}
	payload, reason := decode(data)
	if reason != "" {
		return false, &CorruptError{Path: j.path, Reason: reason}
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return false, &CorruptError{Path: j.path, Reason: fmt.Sprintf("payload does not decode into %T: %v", v, err)}
	}
	return true, nil
}

// Save replaces the journal with v encoded as JSON. When it returns nil the
// new record is durable. When it returns an error the journal holds the old
// record or, if the error came from the final folder sync, possibly the new
// one; it is never left invalid.
func (j *Journal) Save(v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("journal: encode: %w", err)
	}
	data := encode(payload)
	if int64(len(data)) > j.maxSize {
		return fmt.Errorf("journal: record of %d bytes exceeds the %d-byte limit", len(data), j.maxSize)
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	j.removeTemps()

	if err := atomicfile.Replace(j.fs, j.path, j.name+tempInfix+"*", data); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Clear removes the journal (and leftover temporary files) durably. Clearing
// a journal that does not exist is not an error.
func (j *Journal) Clear() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.removeTemps()
	if err := j.fs.Remove(j.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("journal: remove %s: %w", j.path, err)
	}
	// Sync even when the file was already gone: an earlier Clear may have
	// removed it and failed before its folder sync.
	if err := j.fs.SyncDir(j.dir); err != nil {
		return fmt.Errorf("journal: sync folder %s: %w", j.dir, err)
	}
	return nil
}

// removeTemps deletes leftover temporary files of this journal, best effort:
// they are never read, so one that survives only costs space until next time.
// The removal is made durable by the caller's folder sync.
func (j *Journal) removeTemps() {
	names, err := j.fs.ReadDir(j.dir)
	if err != nil {
		return
	}
	prefix := j.name + tempInfix
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			_ = j.fs.Remove(filepath.Join(j.dir, n))
		}
	}
}

func checksum(p []byte) uint32 {
	return crc32.Checksum(p, crc32.MakeTable(crc32.Castagnoli))
}

func header(crc uint32, n uint64) string {
	return fmt.Sprintf("%s v%d crc32c=%08x len=%d\n", magic, FormatVersion, crc, n)
}

// encode frames payload as a version-1 journal file.
func encode(payload []byte) []byte {
	h := header(checksum(payload), uint64(len(payload)))
	out := make([]byte, 0, len(h)+len(payload))
	return append(append(out, h...), payload...)
}

// decode checks a journal file and returns its payload, or a non-empty reason
// why the file is invalid.
func decode(data []byte) (payload []byte, reason string) {
	if len(data) == 0 {
		return nil, "empty file"
	}
	head := data[:min(len(data), maxHeader)]
	nl := bytes.IndexByte(head, '\n')
	if !bytes.HasPrefix(head, []byte(magic+" ")) {
		return nil, fmt.Sprintf("not a journal file (starts with %q)", head[:min(len(head), len(magic)+1)])
	}
	if nl < 0 {
		if len(data) < maxHeader {
			return nil, fmt.Sprintf("truncated header (%d bytes, no line end)", len(data))
		}
		return nil, "header line too long"
	}
	line := string(data[:nl])
	fields := strings.Split(line, " ")
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "v") {
		return nil, fmt.Sprintf("malformed header %q: no format version", line)
	}
	ver, err := strconv.ParseUint(fields[1][1:], 10, 32)
	if err != nil {
		return nil, fmt.Sprintf("malformed header %q: bad format version", line)
	}
	if ver != FormatVersion {
		return nil, fmt.Sprintf("unsupported format version %d (this agent reads version %d)", ver, FormatVersion)
	}
	if len(fields) != 4 || !strings.HasPrefix(fields[2], "crc32c=") || !strings.HasPrefix(fields[3], "len=") {
		return nil, fmt.Sprintf("malformed header %q", line)
	}
	crc, err1 := strconv.ParseUint(strings.TrimPrefix(fields[2], "crc32c="), 16, 32)
	size, err2 := strconv.ParseUint(strings.TrimPrefix(fields[3], "len="), 10, 63)
	if err1 != nil || err2 != nil || header(uint32(crc), size) != line+"\n" {
		return nil, fmt.Sprintf("malformed header %q", line)
	}
	payload = data[nl+1:]
	switch {
	case uint64(len(payload)) < size:
		return nil, fmt.Sprintf("truncated: header says %d payload bytes, file has %d", size, len(payload))
	case uint64(len(payload)) > size:
		return nil, fmt.Sprintf("%d unexpected bytes after the %d-byte payload", uint64(len(payload))-size, size)
	}
	if got := checksum(payload); got != uint32(crc) {
		return nil, fmt.Sprintf("checksum mismatch: header says crc32c %08x, payload has %08x", crc, got)
	}
	if !json.Valid(payload) {
		return nil, "payload is not valid JSON"
	}
	return payload, ""
}
