package manifestgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var created = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("CEST", 2*3600))

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(data []byte) string {
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

func TestBuildAndMarshal(t *testing.T) {
	dir := t.TempDir()
	fw := writeFile(t, dir, "fw.swu", []byte("firmware"))
	sh := writeFile(t, dir, "install.sh", []byte("#!/bin/sh\n"))
	delta := writeFile(t, dir, "delta.bin", []byte("delta"))

	step, err := ParseStep(`handler=microsoft/script:1,files=install.sh,properties={"arguments":"--a <b> & c","scriptFileName":"install.sh"}`)
	if err != nil {
		t.Fatal(err)
	}
	swu, _ := ParseStep("handler=microsoft/swupdate:1,description=image")
	ref, _ := ParseStep("provider=Contoso,name=Toaster.Boot,version=1.0")
	file, _ := ParseFile(fw + `,properties={"role":"rootfs"},downloadHandler=microsoft/delta:1`)
	rel, _ := ParseRelatedFile(delta + `,properties={"microsoft.sourceFileHashAlgorithm":"sha256"}`)
	file.Related = []RelatedFileSpec{rel}
	f := false
	spec := Spec{
		UpdateID:      UpdateID{"Contoso", "Toaster", "1.2.0"},
		Description:   "Toaster <1.2> & more",
		IsDeployable:  &f,
		Compatibility: []Compatibility{{{"manufacturer", "Contoso"}, {"model", "Toaster"}}},
		Steps:         []StepSpec{step, swu, ref},
		Files:         []FileSpec{file, {Path: sh}},
	}
	m, warnings, err := Build(context.Background(), spec, WithCreated(created))
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "step 2") || !strings.Contains(warnings[0], "installedCriteria") {
		t.Errorf("warnings %q, want one for step 2's installedCriteria", warnings)
	}
	got, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "updateId": {
    "provider": "Contoso",
    "name": "Toaster",
    "version": "1.2.0"
  },
  "isDeployable": false,
  "description": "Toaster <1.2> & more",
  "compatibility": [
    {
      "manufacturer": "Contoso",
      "model": "Toaster"
    }
  ],
  "instructions": {
    "steps": [
      {
        "type": "inline",
        "handler": "microsoft/script:1",
        "files": [
          "install.sh"
        ],
        "handlerProperties": {
          "arguments": "--a <b> & c",
          "scriptFileName": "install.sh"
        }
      },
      {
        "type": "inline",
        "description": "image",
        "handler": "microsoft/swupdate:1",
        "files": [
          "fw.swu",
          "install.sh"
        ],
        "handlerProperties": {
          "installedCriteria": "1.0"
        }
      },
      {
        "type": "reference",
        "updateId": {
          "provider": "Contoso",
          "name": "Toaster.Boot",
          "version": "1.0"
        }
      }
    ]
  },
  "files": [
    {
      "filename": "fw.swu",
      "sizeInBytes": 8,
      "hashes": {
        "sha256": "` + sha([]byte("firmware")) + `"
      },
      "properties": {
        "role": "rootfs"
      },
      "relatedFiles": [
        {
          "filename": "delta.bin",
          "sizeInBytes": 5,
          "hashes": {
            "sha256": "` + sha([]byte("delta")) + `"
          },
          "properties": {
            "microsoft.sourceFileHashAlgorithm": "sha256"
          }
        }
      ],
      "downloadHandler": {
        "id": "microsoft/delta:1"
      }
    },
    {
      "filename": "install.sh",
      "sizeInBytes": 10,
      "hashes": {
        "sha256": "` + sha([]byte("#!/bin/sh\n")) + `"
      }
    }
  ],
  "createdDateTime": "2024-05-06T05:08:09Z",
  "manifestVersion": "5.0"
}
`
	if string(got) != want {
		t.Errorf("Marshal:\n%s\nwant:\n%s", got, want)
	}
	// What we write, we accept; and it reads back to the same manifest.
	if vs := Validate(got); vs != nil {
		t.Errorf("own output invalid: %v", vs)
	}
	back, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Errorf("Parse(Marshal(m)) differs:\n%+v\n%+v", back, m)
	}
	again, _ := Marshal(back)
	if !bytes.Equal(again, got) {
		t.Error("Marshal is not stable through Parse")
	}
	if m.FileName() != "Contoso.Toaster.1.2.0.importmanifest.json" {
		t.Errorf("FileName %q", m.FileName())
	}
}

func TestBuildKeepsInstalledCriteria(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "a.deb.json", []byte("{}"))
	for _, h := range []string{"microsoft/apt:1", "microsoft/swupdate:2"} {
		st, _ := ParseStep("handler=" + h + `,properties={"installedCriteria":"apt-1.2"}`)
		spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}, Files: []FileSpec{{Path: p}}}
		m, warnings, err := Build(context.Background(), spec, WithCreated(created))
		if err != nil || len(warnings) != 0 {
			t.Fatalf("%s: %v %q", h, err, warnings)
		}
		if v, _ := m.Instructions.Steps[0].HandlerProperties.Get("installedCriteria"); string(v) != `"apt-1.2"` {
			t.Errorf("%s: installedCriteria %s", h, v)
		}
		// Without it: the default and a warning, for all three handlers.
		st, _ = ParseStep("handler=" + h)
		spec.Steps = []StepSpec{st}
		m, warnings, err = Build(context.Background(), spec, WithCreated(created))
		if err != nil || len(warnings) != 1 {
			t.Fatalf("%s: %v %q", h, err, warnings)
		}
		if v, _ := m.Instructions.Steps[0].HandlerProperties.Get("installedCriteria"); string(v) != `"1.0"` {
			t.Errorf("%s: default installedCriteria %s", h, v)
		}
	}
	// Other handlers get nothing added.
	st, _ := ParseStep("handler=microsoft/script:1")
	spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}, Files: []FileSpec{{Path: p}}}
	m, warnings, err := Build(context.Background(), spec, WithCreated(created))
	if err != nil || len(warnings) != 0 || m.Instructions.Steps[0].HandlerProperties != nil {
		t.Errorf("script step: %v %q %v", err, warnings, m.Instructions.Steps[0].HandlerProperties)
	}
}

type countingMeter struct {
	total atomic.Int64
	read  atomic.Int64
	calls atomic.Int32
	fin   atomic.Int32
}

func (c *countingMeter) Reader(r io.Reader) io.Reader { return &meterReader{r, c} }
func (c *countingMeter) Finish()                      { c.fin.Add(1) }

type meterReader struct {
	r io.Reader
	c *countingMeter
}

func (m *meterReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.c.read.Add(int64(n))
	return n, err
}

func TestBuildHashesManyFilesConcurrently(t *testing.T) {
	dir := t.TempDir()
	var files []FileSpec
	contents := map[string][]byte{}
	for i := range 10 {
		data := make([]byte, 1+i*(HashBufferSize/3)) // around and across buffer boundaries
		rand.Read(data)
		name := "f" + string(rune('a'+i))
		contents[name] = data
		files = append(files, FileSpec{Path: writeFile(t, dir, name, data)})
	}
	st, _ := ParseStep("handler=vendor/flash:1")
	spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}, Files: files}
	meter := &countingMeter{}
	var total int64
	m, _, err := Build(context.Background(), spec, WithCreated(created), WithConcurrency(3), WithProgress(func(t int64) Meter {
		meter.calls.Add(1)
		total = t
		return meter
	}))
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, f := range m.Files {
		data := contents[f.Filename]
		if f.SizeInBytes != int64(len(data)) || f.Hashes["sha256"] != sha(data) {
			t.Errorf("%s: size %d hash %s, want %d %s", f.Filename, f.SizeInBytes, f.Hashes["sha256"], len(data), sha(data))
		}
		sum += f.SizeInBytes
	}
	if meter.calls.Load() != 1 || meter.fin.Load() != 1 || total != sum || meter.read.Load() != sum {
		t.Errorf("meter: %d calls, %d finishes, total %d, read %d; want 1, 1, %d, %d", meter.calls.Load(), meter.fin.Load(), total, meter.read.Load(), sum, sum)
	}
	if got := m.Instructions.Steps[0].Files; len(got) != 10 || got[0] != "fa" || got[9] != "fj" {
		t.Errorf("default step files %q", got)
	}
}

func TestBuildInvalidFailsBeforeHashing(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "fw.bin", []byte("x"))
	st, _ := ParseStep("handler=bad")
	spec := Spec{UpdateID: UpdateID{"Con toso", "N", "1"}, Steps: []StepSpec{st}, Files: []FileSpec{{Path: p}}}
	hashed := false
	m, _, err := Build(context.Background(), spec, WithProgress(func(int64) Meter { hashed = true; return nil }))
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("err %v, want a ValidationError", err)
	}
	if hashed {
		t.Error("files were hashed although the spec is invalid")
	}
	if m == nil {
		t.Error("no manifest returned with the violations")
	}
	var paths []string
	for _, v := range ve.Violations {
		paths = append(paths, v.Path)
	}
	want := []string{"$.updateId.provider", "$.updateId.version", "$.compatibility", "$.instructions.steps[0].handler", "$.instructions.steps[0].handler"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("paths %q, want %q", paths, want)
	}
}

func TestBuildFileErrors(t *testing.T) {
	dir := t.TempDir()
	st, _ := ParseStep("handler=a/b:1")
	spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}}
	spec.Files = []FileSpec{{Path: filepath.Join(dir, "missing.bin")}}
	if _, _, err := Build(context.Background(), spec); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	spec.Files = []FileSpec{{Path: dir}}
	if _, _, err := Build(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Errorf("directory: %v", err)
	}
	// An empty file is not importable (sizeInBytes ≥ 1).
	spec.Files = []FileSpec{{Path: writeFile(t, dir, "empty.bin", nil)}}
	if _, _, err := Build(context.Background(), spec); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "$.files[0].sizeInBytes") {
		t.Errorf("empty file: %v", err)
	}
	// Two files with the same base name.
	a := writeFile(t, dir, "same.bin", []byte("a"))
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	b := writeFile(t, filepath.Join(dir, "sub"), "same.bin", []byte("b"))
	spec.Files = []FileSpec{{Path: a}, {Path: b}}
	if _, _, err := Build(context.Background(), spec); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "$.files[1].filename") {
		t.Errorf("duplicate base names: %v", err)
	}
}

func TestBuildCanceled(t *testing.T) {
	dir := t.TempDir()
	p := writeFile(t, dir, "a.bin", bytes.Repeat([]byte{1}, 3*HashBufferSize))
	st, _ := ParseStep("handler=a/b:1")
	spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}, Files: []FileSpec{{Path: p}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Build(ctx, spec); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
}

func TestHashReader(t *testing.T) {
	for _, n := range []int{0, 1, HashBufferSize - 1, HashBufferSize, HashBufferSize + 1, 3*HashBufferSize + 7} {
		data := bytes.Repeat([]byte{0x5a}, n)
		// A reader that returns short reads must give the same result.
		size, sum, err := HashReader(io.MultiReader(bytes.NewReader(data[:n/2]), &oneByteReader{bytes.NewReader(data[n/2:])}))
		if err != nil || size != int64(n) || sum != sha(data) {
			t.Errorf("n=%d: %d %s %v", n, size, sum, err)
		}
	}
	_, _, err := HashReader(io.MultiReader(strings.NewReader("abc"), errReader{}))
	if err == nil {
		t.Error("read error not returned")
	}
}

type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) > 1 {
		p = p[:1]
	}
	return o.r.Read(p)
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// BenchmarkHashReader measures the hashing loop alone (SHA-NI where the CPU has it).
func BenchmarkHashReader(b *testing.B) {
	data := make([]byte, 64<<20)
	rand.Read(data)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := HashReader(bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildHash measures Build's file hashing on a 256 MiB file (page cache warm after
// the first run); compare with `sha256sum` on a file of the same size.
func BenchmarkBuildHash(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "big.bin")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	for range 256 {
		f.Write(chunk)
	}
	f.Close()
	b.SetBytes(256 << 20)
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := hashFile(context.Background(), p, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBuildReportsTheFailureNotTheCancel: when one file fails, the others are canceled; the
// error Build returns is the failure, even when a canceled file comes first.
func TestBuildReportsTheFailureNotTheCancel(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.bin", []byte("a"))
	b := writeFile(t, dir, "b.bin", []byte("b"))
	st, _ := ParseStep("handler=a/b:1")
	spec := Spec{UpdateID: UpdateID{"C", "N", "1.0"}, Compatibility: []Compatibility{{{"a", "b"}}}, Steps: []StepSpec{st}, Files: []FileSpec{{Path: a}, {Path: b}}}
	broken := errors.New("b.bin: read error")
	m := &scriptedMeter{readers: map[string]func([]byte) (int, error){}}
	bFailed := make(chan struct{})
	m.readers[b] = func([]byte) (int, error) { close(bFailed); return 0, broken }
	m.readers[a] = func([]byte) (int, error) { <-bFailed; return 0, context.Canceled } // canceled by b's failure
	_, _, err := Build(context.Background(), spec, WithConcurrency(2), WithProgress(func(int64) Meter { return m }))
	if !errors.Is(err, broken) {
		t.Errorf("err %v, want b's failure", err)
	}
}

// scriptedMeter replaces the reads of each file (by path) with a function.
type scriptedMeter struct {
	readers map[string]func([]byte) (int, error)
}

func (m *scriptedMeter) Reader(r io.Reader) io.Reader {
	return readFunc(m.readers[r.(*os.File).Name()])
}
func (m *scriptedMeter) Finish() {}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }
