package hub

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/internal/imagestep"
	"github.com/aduflash/aduflash/manifestgen"
)

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
	u := s.newUpdate(m, importManifestJSON)
	children, err := s.referencedUpdates(u.UpdateID, m)
	if err != nil {
		return nil, err
	}
	if err := checkImportFiles(m, files); err != nil {
		return nil, err
	}
	// Files are copied and hashed without the lock (devices keep reporting meanwhile).
	st := &staging{s: s, dir: dir, files: files, used: map[string]bool{}, ids: map[string]string{}, detached: map[int]string{}}
	defer st.discard()
	if err := st.payloads(m, u); err != nil {
		return nil, err
	}
	// The images of aduflash/image:1 steps as aduagent would check them (the staged copies, whose hashes matched).
	if err := imagestep.Check(m, st.path); err != nil {
		return nil, err
	}
	if err := st.detachedManifests(m, u, children); err != nil {
		return nil, err
	}
	if err := s.sign(u, m, st); err != nil {
		return nil, err
	}
	if err := s.addImported(u); err != nil {
		return nil, err
	}
	st.keep()
	c := *u
	return &c, nil
}

// newUpdate is the update m describes, without its files and manifest yet.
func (s *Service) newUpdate(m *manifestgen.Manifest, importManifestJSON []byte) *Update {
	u := &Update{
		UpdateID:       adu.UpdateID{Provider: m.UpdateID.Provider, Name: m.UpdateID.Name, Version: m.UpdateID.Version},
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
	return u
}

// referencedUpdates checks that uid is not imported yet and returns the child updates of m's
// reference steps, in step order: each imported before, with no reference steps of its own.
func (s *Service) referencedUpdates(uid adu.UpdateID, m *manifestgen.Manifest) ([]*Update, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.updates[uid]; ok {
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
			return nil, fmt.Errorf("%w: steps[%d] refers to %s, which is not imported", ErrUnknownUpdate, i, cid)
		}
		if len(c.References) > 0 {
			return nil, fmt.Errorf("%w: steps[%d] refers to %s, which has reference steps itself", manifestgen.ErrInvalid, i, cid)
		}
		children = append(children, c)
	}
	return children, nil
}

// checkImportFiles checks that files names exactly the files m needs (payloads and related
// files).
func checkImportFiles(m *manifestgen.Manifest, files map[string]string) error {
	need := ImportFileSizes(m)
	var problems []string
	for name := range need {
		if _, ok := files[name]; !ok {
			problems = append(problems, fmt.Sprintf("%q is missing", name))
		}
	}
	for name := range files {
		if _, ok := need[name]; !ok {
			problems = append(problems, fmt.Sprintf("%q is not in the import manifest", name))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return fmt.Errorf("%w: %s", ErrImportFiles, strings.Join(problems, "; "))
	}
	return nil
}

// sign writes u's update manifest (see updateManifestOf) and signs it.
func (s *Service) sign(u *Update, m *manifestgen.Manifest, st *staging) error {
	b, err := updateManifestOf(m, u, st.ids, st.detached)
	if err != nil {
		return err
	}
	if _, err := adu.ParseManifest(b); err != nil {
		return fmt.Errorf("hub: import: the update manifest made does not parse: %w", err)
	}
	u.Manifest = string(b)
	u.Signature, err = s.signer.Sign(b)
	return err
}

// addImported stores u (its files staged and synced) and adds it to the Service, unless an
// import of the same update id finished first.
func (s *Service) addImported(u *Update) error {
	data, err := marshal(u)
	if err != nil {
		return err
	}
	if err := syncDir(s.filesDir()); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.updates[u.UpdateID]; ok {
		return fmt.Errorf("%w: %s", ErrUpdateExists, u.UpdateID)
	}
	if err := writeFileAtomic(filepath.Join(s.updatesDir(), updateKey(u.UpdateID)+".json"), data, 0o600); err != nil {
		return err
	}
	s.addUpdateLocked(u)
	s.opts.Logger.Info("hub: imported", "update", u.UpdateID.String(), "files", len(u.Files))
	return nil
}

// staging puts an import's files into the Service's files folder under new file ids; what it
// put there is removed by discard unless keep was called.
type staging struct {
	s     *Service
	dir   *os.Root          // the files' folder (nil: trusted paths)
	files map[string]string // import file name → path
	// ids maps the payloads' file names to their file ids; detached the reference steps'
	// indexes to the file ids of their detached manifests.
	ids      map[string]string
	detached map[int]string
	used     map[string]bool // file ids taken by this import
	staged   []string        // the files written
	kept     bool
}

// payloads copies m's files and their related files, checking their sizes and hashes, into
// u.Files: each payload followed by its related files.
func (st *staging) payloads(m *manifestgen.Manifest, u *Update) error {
	for _, f := range m.Files {
		uf, err := st.copy(FilePayload, f.Filename, f.SizeInBytes, f.Hashes, "")
		if err != nil {
			return err
		}
		u.Files = append(u.Files, uf)
		st.ids[f.Filename] = uf.ID
		for _, r := range f.RelatedFiles {
			rf, err := st.copy(FileRelated, r.Filename, r.SizeInBytes, r.Hashes, uf.ID)
			if err != nil {
				return err
			}
			u.Files = append(u.Files, rf)
		}
	}
	return nil
}

// copy stages the import file name as a file of kind.
func (st *staging) copy(kind FileKind, name string, size int64, hashes map[string]string, parent string) (UpdateFile, error) {
	id, dst := st.newFile()
	if err := copyChecked(st.dir, st.files[name], dst, size, hashes); err != nil {
		return UpdateFile{}, fmt.Errorf("%w: %s: %w", ErrImportFiles, name, err)
	}
	return UpdateFile{ID: id, Kind: kind, FileName: name, SizeInBytes: size, Hashes: hashes, Parent: parent}, nil
}

// detachedManifests makes the detached manifest file ({"updateManifest":"…"}) of each
// reference step of m, whose child updates are children, in step order.
func (st *staging) detachedManifests(m *manifestgen.Manifest, u *Update, children []*Update) error {
	for i, step := range m.Instructions.Steps {
		if !step.IsReference() {
			continue
		}
		c := children[0]
		children = children[1:]
		b, err := marshal(detachedManifestFile{UpdateManifest: c.Manifest})
		if err != nil {
			return err
		}
		id, dst := st.newFile()
		if err := writeFileAtomic(dst, b, 0o600); err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		name := strings.ToLower(c.UpdateID.Provider+"."+c.UpdateID.Name) + "." + c.UpdateID.Version + ".updatemanifest5.json"
		u.Files = append(u.Files, UpdateFile{ID: id, Kind: FileDetachedManifest, FileName: name, SizeInBytes: int64(len(b)),
			Hashes: map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}})
		u.References = append(u.References, c.UpdateID)
		st.detached[i] = id
	}
	return nil
}

// newFile picks an unused file id and returns it with the path of its file, which discard
// removes unless kept.
func (st *staging) newFile() (id, path string) {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = "f" + hex.EncodeToString(b[:])
		st.s.mu.Lock()
		_, taken := st.s.files[id]
		st.s.mu.Unlock()
		if !taken && !st.used[id] {
			st.used[id] = true
			path = filepath.Join(st.s.filesDir(), id)
			st.staged = append(st.staged, path)
			return id, path
		}
	}
}

// path is where the payload of import file name was staged.
func (st *staging) path(name string) string { return filepath.Join(st.s.filesDir(), st.ids[name]) }

// keep makes the staged files the update's.
func (st *staging) keep() { st.kept = true }

// discard removes the staged files unless they were kept.
func (st *staging) discard() {
	if st.kept {
		return
	}
	for _, p := range st.staged {
		_ = os.Remove(p)
	}
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
var ErrNotRegular = errkind.New(errkind.Input, "not a regular file")

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
