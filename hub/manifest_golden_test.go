package hub

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/golden"
)

// importFile writes data as name into dir and returns its import manifest entry members
// (filename, sizeInBytes, hashes with sha256 and, if sha512, sha512 too).
func importFile(t *testing.T, dir, name string, data []byte, sha512too bool) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
		t.Fatal(err)
	}
	s256 := sha256.Sum256(data)
	hashes := fmt.Sprintf(`"sha256": %q`, base64.StdEncoding.EncodeToString(s256[:]))
	if sha512too {
		s512 := sha512.Sum512(data)
		hashes = fmt.Sprintf(`"sha512": %q, `, base64.StdEncoding.EncodeToString(s512[:])) + hashes
	}
	return fmt.Sprintf(`"filename": %q, "sizeInBytes": %d, "hashes": {%s}`, name, len(data), hashes)
}

// The update manifests Import writes, byte for byte (file ids and the detached manifest's
// hash, which follow from random ids, replaced by their order of appearance): a child update
// and a parent with a reference step, two compatibility sets, handler properties with
// spacing, HTML characters and non-ASCII text, a step without properties and one with empty
// properties, two hash algorithms, a related file with properties and a download handler.
func TestUpdateManifestGolden(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456700, time.UTC)
	h := newHub(t, Options{})
	svc, err := NewService(h, newTestSigner(t, "ADU.golden.R", "ADU.golden.S"), ServiceOptions{DataDir: dir, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	in := t.TempDir()
	files := func(names ...string) map[string]string {
		m := map[string]string{}
		for _, n := range names {
			m[n] = filepath.Join(in, n)
		}
		return m
	}
	leaf := `{
  "updateId": {"provider": "Contoso", "name": "Toaster-Leaf", "version": "1.0.1"},
  "isDeployable": false,
  "compatibility": [{"manufacturer": "contoso", "model": "toaster-mcu"}],
  "instructions": {"steps": [{"handler": "microsoft/script:1", "files": ["run.sh"],
    "handlerProperties": {"scriptFileName": "run.sh", "arguments": "--a <b> & 'c' \u2028 é ` + "\u2028" + `",
      "installedCriteria": "1.0.1"}}]},
  "files": [{` + importFile(t, in, "run.sh", []byte("#!/bin/sh\necho leaf\n"), false) + `}],
  "createdDateTime": "2026-01-01T00:00:00Z",
  "manifestVersion": "5.0"
}`
	parent := `{
  "updateId": {"provider": "Contoso", "name": "Toaster", "version": "2.0.1"},
  "description": "parent <with> & a reference",
  "compatibility": [{"manufacturer": "contoso", "model": "toaster"}, {"model": "toaster-2", "manufacturer": "contoso"}],
  "instructions": {"steps": [
    {"type": "reference", "updateId": {"provider": "Contoso", "name": "Toaster-Leaf", "version": "1.0.1"}},
    {"handler": "microsoft/swupdate:2", "files": ["rootfs.swu", "extra <&>.bin"],
      "handlerProperties": {"installedCriteria": "2.0.1", "nested": {"b": [1, 2.50, true, null], "a": "x"}}},
    {"handler": "microsoft/apt:1", "files": ["extra <&>.bin"]},
    {"handler": "microsoft/apt:1", "files": ["extra <&>.bin"], "handlerProperties": {}}]},
  "files": [
    {` + importFile(t, in, "rootfs.swu", payload(2000, 1), false) + `,
      "relatedFiles": [{` + importFile(t, in, "delta-1.swu", payload(300, 2), false) + `,
        "properties": {"microsoft.sourceFileHashAlgorithm": "sha256", "microsoft.sourceFileHash": "YWJj"}}],
      "downloadHandler": {"id": "microsoft/delta:1"}},
    {` + importFile(t, in, "extra <&>.bin", payload(77, 3), true) + `}],
  "createdDateTime": "2026-01-01T00:00:00Z",
  "manifestVersion": "5.0"
}`
	var got strings.Builder
	for _, imp := range []struct {
		json  string
		files map[string]string
	}{{leaf, files("run.sh")}, {parent, files("rootfs.swu", "delta-1.swu", "extra <&>.bin")}} {
		u, err := svc.Import([]byte(imp.json), imp.files)
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString(normalizeManifest(u) + "\n")
	}
	golden.Check(t, filepath.Join("testdata", "golden", "updatemanifests.json"), got.String())
}

// normalizeManifest replaces u's file ids in its manifest by F1, F2, … in order of
// appearance, and the hashes of detached manifest files (made of other random ids) by
// DETACHED-SHA256.
func normalizeManifest(u *Update) string {
	m := u.Manifest
	for _, f := range u.Files {
		if f.Kind == FileDetachedManifest {
			m = strings.ReplaceAll(m, f.Hashes["sha256"], "DETACHED-SHA256")
		}
	}
	ids := map[string]string{}
	return regexp.MustCompile(`f[0-9a-f]{16}`).ReplaceAllStringFunc(m, func(id string) string {
		if ids[id] == "" {
			ids[id] = fmt.Sprintf("F%d", len(ids)+1)
		}
		return ids[id]
	})
}
