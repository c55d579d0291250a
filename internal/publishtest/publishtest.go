// Package publishtest makes updates on disk for the tests of publishing (package publish,
// aduimport publish, aduhub's import API): payload files and their import manifest, built by
// manifestgen as aduimport manifest create builds it.
package publishtest

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/manifestgen"
)

// Update is an update written by Write.
type Update struct {
	ID       manifestgen.UpdateID
	Manifest string   // the import manifest's path
	Files    []string // the payloads' paths, in the order given
}

// Payload is one file of an update: Data, or (Data nil) Size bytes of testpayload's
// stream for Seed, written without holding them in memory.
type Payload struct {
	Name string
	Data []byte
	Size int64
	Seed uint64
}

// write writes p's bytes to path.
func (p Payload) write(path string) error {
	if p.Data != nil {
		return os.WriteFile(path, p.Data, 0o644)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, testpayload.New(p.Seed, p.Size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Write writes payloads into dir and an import manifest for them (update Contoso.Toaster
// at version, one step of handler test/raw:1 over every file) as dir/PROVIDER.NAME.VERSION
// .importmanifest.json.
func Write(t testing.TB, dir, version string, payloads ...Payload) Update {
	t.Helper()
	spec := manifestgen.Spec{UpdateID: manifestgen.UpdateID{Provider: "Contoso", Name: "Toaster", Version: version}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	compat, err := manifestgen.ParseCompat("manufacturer=Contoso,model=Toaster")
	must(err)
	step, err := manifestgen.ParseStep(`handler=test/raw:1,properties={"installedCriteria":"` + version + `"}`)
	must(err)
	spec.Compatibility, spec.Steps = []manifestgen.Compatibility{compat}, []manifestgen.StepSpec{step}
	u := Update{ID: spec.UpdateID}
	for _, p := range payloads {
		path := filepath.Join(dir, p.Name)
		must(p.write(path))
		f, err := manifestgen.ParseFile(path)
		must(err)
		spec.Files = append(spec.Files, f)
		u.Files = append(u.Files, path)
	}
	m, _, err := manifestgen.Build(context.Background(), spec, manifestgen.WithCreated(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)))
	must(err)
	data, err := manifestgen.Marshal(m)
	must(err)
	u.Manifest = filepath.Join(dir, m.FileName())
	must(os.WriteFile(u.Manifest, data, 0o644))
	return u
}
