package publish

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/manifestgen"
)

// ErrFiles matches every error about the files given for an import manifest: one missing,
// one the manifest does not name, one given twice, or one whose size or SHA-256 is not the
// manifest's.
var ErrFiles = errkind.New(errkind.Input, "publish: the files do not match the import manifest")

// Update is an import manifest and its files, checked.
type Update struct {
	ID manifestgen.UpdateID
	// Manifest is the import manifest file, as a LocalFile (its name the base name given).
	Manifest LocalFile
	// Files are the manifest's files and related files, in the manifest's order.
	Files []LocalFile
}

// LocalFile is a file to upload, with what Check found it to be.
type LocalFile struct {
	Name   string // the name in the import manifest (the blob's base name)
	Path   string
	Size   int64
	SHA256 string // standard base64, as in import manifests
	MD5    []byte
}

// Check reads the import manifest at manifestPath and checks it with the service's rules
// (manifestgen.Parse), then checks that paths are exactly its files and related files (by
// base name) with the sizes it gives (all of them, before any hashing) and the SHA-256 it
// gives. meter, if not nil, is given the total bytes to hash and counts them.
func Check(ctx context.Context, manifestPath string, paths []string, meter func(total int64) manifestgen.Meter) (*Update, error) {
	data, err := manifestgen.ReadFile(manifestPath)
	if err != nil {
		return nil, err
	}
	m, err := manifestgen.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", manifestPath, err)
	}
	sumM, sumMD5 := sha256.Sum256(data), md5.Sum(data)
	u := &Update{ID: m.UpdateID, Manifest: LocalFile{Name: filepath.Base(manifestPath), Path: manifestPath, Size: int64(len(data)),
		SHA256: base64.StdEncoding.EncodeToString(sumM[:]), MD5: sumMD5[:]}}
	if u.Files, err = matchFiles(wanted(m), paths); err != nil {
		return nil, err
	}
	if err := hashFiles(ctx, u.Files, meter); err != nil {
		return nil, err
	}
	return u, nil
}

// wanted lists the files m needs, payloads each followed by its related files, with the
// size and SHA-256 m gives them.
func wanted(m *manifestgen.Manifest) []LocalFile {
	var out []LocalFile
	for _, f := range m.Files {
		out = append(out, LocalFile{Name: f.Filename, Size: f.SizeInBytes, SHA256: f.Hashes["sha256"]})
		for _, r := range f.RelatedFiles {
			out = append(out, LocalFile{Name: r.Filename, Size: r.SizeInBytes, SHA256: r.Hashes["sha256"]})
		}
	}
	return out
}

// matchFiles gives each wanted file its path from paths (by base name) and checks sizes;
// every problem is listed in one ErrFiles.
func matchFiles(want []LocalFile, paths []string) ([]LocalFile, error) {
	byName := map[string]string{}
	var problems []string
	for _, p := range paths {
		name := filepath.Base(p)
		if prev, dup := byName[name]; dup {
			problems = append(problems, fmt.Sprintf("%s and %s have the same name", prev, p))
		}
		byName[name] = p
	}
	needed := map[string]bool{}
	for i := range want {
		f := &want[i]
		needed[f.Name] = true
		f.Path = byName[f.Name]
		if f.Path == "" {
			problems = append(problems, fmt.Sprintf("%s: named in the import manifest, not given", f.Name))
			continue
		}
		st, err := os.Stat(f.Path)
		if err != nil {
			return nil, err
		}
		if !st.Mode().IsRegular() {
			problems = append(problems, fmt.Sprintf("%s: not a regular file", f.Path))
		} else if st.Size() != f.Size {
			problems = append(problems, fmt.Sprintf("%s: %d bytes, the import manifest says %d", f.Path, st.Size(), f.Size))
		}
	}
	for name, p := range byName {
		if !needed[name] {
			problems = append(problems, fmt.Sprintf("%s: not in the import manifest", p))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, fmt.Errorf("%w: %s", ErrFiles, strings.Join(problems, "; "))
	}
	return want, nil
}

// hashFiles computes each file's SHA-256 and MD5 in one pass and compares the SHA-256 with
// the manifest's.
func hashFiles(ctx context.Context, files []LocalFile, meter func(total int64) manifestgen.Meter) error {
	var total int64
	for _, f := range files {
		total += f.Size
	}
	var m manifestgen.Meter
	if meter != nil {
		if m = meter(total); m != nil {
			defer m.Finish()
		}
	}
	for i := range files {
		f := &files[i]
		sha, md, err := hashFile(ctx, f.Path, m)
		if err != nil {
			return err
		}
		if sha != f.SHA256 {
			return fmt.Errorf("%w: %s: SHA-256 %s, the import manifest says %s", ErrFiles, f.Path, sha, f.SHA256)
		}
		f.MD5 = md
	}
	return nil
}

// hashFile returns the SHA-256 (base64) and the MD5 of the file at path.
func hashFile(ctx context.Context, path string, m manifestgen.Meter) (string, []byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer fh.Close()
	var r io.Reader = readerCtx{ctx, fh}
	if m != nil {
		r = m.Reader(r)
	}
	sh, md := sha256.New(), md5.New()
	if _, err := io.CopyBuffer(io.MultiWriter(sh, md), r, make([]byte, 1<<20)); err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	return base64.StdEncoding.EncodeToString(sh.Sum(nil)), md.Sum(nil), nil
}

// readerCtx stops reading once ctx is done.
type readerCtx struct {
	ctx context.Context
	r   io.Reader
}

func (r readerCtx) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
