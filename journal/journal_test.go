package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// record is shaped like what the agent keeps: a deployment, a download
// checkpoint (download.State) and a slot write cursor (slots.Cursor).
type record struct {
	UpdateID string `json:"updateId"`
	Step     string `json:"step"`
	Download struct {
		Size   int64  `json:"size"`
		SHA256 []byte `json:"sha256"`
		Offset int64  `json:"offset"`
		Hash   []byte `json:"hashState"`
		ETag   string `json:"etag,omitempty"`
	} `json:"download"`
	Cursor struct {
		Slot     string `json:"slot"`
		Size     int64  `json:"size"`
		Offset   int64  `json:"offset"`
		Physical int64  `json:"physical"`
		Chunk    int    `json:"chunk"`
	} `json:"cursor"`
}

func rec(step string, off int64) *record {
	r := &record{UpdateID: "contoso/fw/1.2." + step, Step: step}
	r.Download.Size = 1 << 20
	r.Download.SHA256 = bytes.Repeat([]byte{0xab}, 32)
	r.Download.Offset = off
	r.Download.Hash = []byte(fmt.Sprintf("sha\x03state-%d", off))
	r.Download.ETag = `"0x8DB"`
	r.Cursor.Slot = "rootfs-b"
	r.Cursor.Size = 1 << 20
	r.Cursor.Offset = off
	r.Cursor.Physical = off + 4096
	r.Cursor.Chunk = int(off / 65536)
	return r
}

func mustOpen(t testing.TB, dir string, opts ...Option) *Journal {
	t.Helper()
	j, err := Open(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "aduagent")
	j := mustOpen(t, dir)
	var got record
	if found, err := j.Load(&got); found || err != nil {
		t.Fatalf("Load of missing journal = %v, %v; want false, nil", found, err)
	}
	for _, want := range []*record{rec("download", 65536), rec("install", 1<<20)} {
		if err := j.Save(want); err != nil {
			t.Fatal(err)
		}
		// A fresh Journal (as after a reboot) reads the same record.
		got = record{}
		found, err := mustOpen(t, dir).Load(&got)
		if !found || err != nil {
			t.Fatalf("Load = %v, %v", found, err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("Load = %+v, want %+v", got, *want)
		}
	}
	names := dirNames(t, dir)
	if !slices.Equal(names, []string{DefaultName}) {
		t.Fatalf("folder holds %v, want only the journal", names)
	}
	data, _ := os.ReadFile(j.Path())
	if !strings.HasPrefix(string(data), "aduflash-journal v1 crc32c=") {
		t.Fatalf("file starts %q", data[:min(len(data), 40)])
	}
}

func TestClear(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir, WithName("deployment.json"))
	if err := j.Clear(); err != nil {
		t.Fatalf("Clear of missing journal: %v", err)
	}
	if err := j.Save(rec("download", 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "deployment.json.tmp-123"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Clear(); err != nil {
		t.Fatal(err)
	}
	var got record
	if found, err := j.Load(&got); found || err != nil {
		t.Fatalf("Load after Clear = %v, %v; want false, nil", found, err)
	}
	if names := dirNames(t, dir); len(names) != 0 {
		t.Fatalf("folder holds %v after Clear", names)
	}
	if err := j.Clear(); err != nil {
		t.Fatalf("second Clear: %v", err)
	}
}

func TestOpenAndArguments(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", ".", "..", "a/b", `a\b`} {
		if _, err := Open(dir, WithName(name)); err == nil {
			t.Errorf("Open with name %q succeeded", name)
		}
	}
	if _, err := Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	j := mustOpen(t, dir)
	var r record
	if _, err := j.Load(r); err == nil || errors.Is(err, ErrCorrupt) {
		t.Errorf("Load(non-pointer) = %v", err)
	}
	if err := j.Save(func() {}); err == nil {
		t.Error("Save of an unencodable value succeeded")
	}
	small := mustOpen(t, dir, WithMaxSize(200))
	if err := small.Save(strings.Repeat("x", 300)); err == nil {
		t.Error("Save over the size limit succeeded")
	}
	if err := j.Save(strings.Repeat("x", 300)); err != nil {
		t.Fatal(err)
	}
	var s string
	if _, err := small.Load(&s); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Load over the size limit = %v, want ErrCorrupt", err)
	}
}

func TestCorrupt(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	if err := j.Save(rec("install", 123456)); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, data []byte, reason string) {
		t.Helper()
		if err := os.WriteFile(j.Path(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		var got record
		found, err := j.Load(&got)
		if found || !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load = %v, %v; want ErrCorrupt", found, err)
		}
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Path != j.Path() || !strings.Contains(err.Error(), j.Path()) {
			t.Fatalf("error %q does not name the file %s", err, j.Path())
		}
		if !strings.Contains(err.Error(), reason) {
			t.Fatalf("error %q does not say %q", err, reason)
		}
	}
	t.Run("flipped byte", func(t *testing.T) {
		for i := range good {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				bad := slices.Clone(good)
				bad[i] ^= mask
				check(t, bad, "")
			}
		}
	})
	t.Run("truncated", func(t *testing.T) {
		for n := range len(good) {
			check(t, good[:n], "")
		}
		check(t, good[:len(good)-1], "truncated")
	})
	t.Run("trailing bytes", func(t *testing.T) {
		check(t, append(slices.Clone(good), '\n'), "unexpected bytes")
	})
	t.Run("wrong version", func(t *testing.T) {
		check(t, bytes.Replace(good, []byte(" v1 "), []byte(" v2 "), 1), "unsupported format version 2")
		check(t, bytes.Replace(good, []byte(" v1 "), []byte(" v0 "), 1), "unsupported format version 0")
	})
	t.Run("checksum", func(t *testing.T) {
		bad := slices.Clone(good)
		bad[len(bad)-2] ^= 0x04
		check(t, bad, "checksum mismatch")
	})
	t.Run("not JSON", func(t *testing.T) {
		check(t, encode([]byte(`{"updateId": "x"`)), "not valid JSON")
		check(t, encode([]byte("not json")), "not valid JSON")
	})
	t.Run("wrong JSON type", func(t *testing.T) {
		check(t, encode([]byte(`{"cursor": "rootfs-b"}`)), "does not decode")
	})
	t.Run("not a journal", func(t *testing.T) {
		check(t, []byte(`{"updateId": "x"}`), "not a journal file")
		check(t, nil, "empty file")
	})
	t.Run("non-canonical header", func(t *testing.T) {
		p := []byte(`{}`)
		c := checksum(p)
		for _, h := range []string{
			fmt.Sprintf("aduflash-journal v1 crc32c=%08X len=2\n", c),
			fmt.Sprintf("aduflash-journal v1 crc32c=%08x len=02\n", c),
			fmt.Sprintf("aduflash-journal v1 crc32c=%08x  len=2\n", c),
			fmt.Sprintf("aduflash-journal v1 len=2 crc32c=%08x\n", c),
			fmt.Sprintf("aduflash-journal v1 crc32c=%08x len=2\r\n", c),
		} {
			check(t, append([]byte(h), p...), "malformed header")
		}
	})
}

func TestLeftoverTempFiles(t *testing.T) {
	dir := t.TempDir()
	j := mustOpen(t, dir)
	old := rec("download", 4096)
	if err := j.Save(old); err != nil {
		t.Fatal(err)
	}
	// What a crash during a Save leaves: torn and complete temporary files.
	complete := encode([]byte(`{"step":"from-a-temp-file"}`))
	for name, data := range map[string][]byte{
		DefaultName + ".tmp-1":          complete[:10],
		DefaultName + ".tmp-2882139":    complete,
		DefaultName + ".tmp-empty":      nil,
		"unrelated.tmp-1":               []byte("keep"),
		"not-" + DefaultName + ".tmp-1": []byte("keep"),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var got record
	if found, err := j.Load(&got); !found || err != nil || !reflect.DeepEqual(&got, old) {
		t.Fatalf("Load with leftover temp files = %v, %v, %+v", found, err, got)
	}
	next := rec("install", 8192)
	if err := j.Save(next); err != nil {
		t.Fatal(err)
	}
	want := []string{DefaultName, "not-" + DefaultName + ".tmp-1", "unrelated.tmp-1"}
	if names := dirNames(t, dir); !slices.Equal(names, want) {
		t.Fatalf("folder after Save holds %v, want %v", names, want)
	}
	got = record{}
	if found, err := j.Load(&got); !found || err != nil || !reflect.DeepEqual(&got, next) {
		t.Fatalf("Load = %v, %v, %+v", found, err, got)
	}
}

// outcome classifies what Load returned after a power cut.
func outcome(t *testing.T, st crashState, old, new *record) string {
	t.Helper()
	j, err := Open(st.fs.dir, WithFS(st.fs))
	if err != nil {
		t.Fatalf("%s: Open: %v", st.desc, err)
	}
	var got record
	found, err := j.Load(&got)
	switch {
	case err != nil:
		t.Fatalf("%s: Load: %v", st.desc, err)
	case !found && old == nil:
		return "old"
	case !found && new == nil:
		return "new"
	case !found:
		t.Fatalf("%s: journal lost", st.desc)
	case old != nil && reflect.DeepEqual(&got, old):
		return "old"
	case new != nil && reflect.DeepEqual(&got, new):
		return "new"
	default:
		t.Fatalf("%s: Load returned neither the old nor the new record: %+v", st.desc, got)
	}
	return ""
}

// afterPowerCut checks that the journal works normally after power returns:
// the next Save replaces everything, including leftover temporary files.
func afterPowerCut(t *testing.T, st crashState) {
	t.Helper()
	j, err := Open(st.fs.dir, WithFS(st.fs))
	if err != nil {
		t.Fatal(err)
	}
	third := rec("third", 3)
	if err := j.Save(third); err != nil {
		t.Fatalf("%s: Save after power returned: %v", st.desc, err)
	}
	var got record
	if found, err := j.Load(&got); !found || err != nil || !reflect.DeepEqual(&got, third) {
		t.Fatalf("%s: Load after Save = %v, %v, %+v", st.desc, found, err, got)
	}
	if names := st.fs.names(); !slices.Equal(names, []string{DefaultName}) {
		t.Fatalf("%s: folder holds %v after Save, want only the journal", st.desc, names)
	}
}

// cutEverywhere runs op with a power cut after every possible number of file
// system operations and checks every state the cut may leave.
func cutEverywhere(t *testing.T, setup func(*memFS), op func(*Journal) error, old, new *record) {
	const dir = "/data/aduagent"
	run := func(cut int) (*memFS, error) {
		m := newMemFS(dir)
		setup(m)
		j, err := Open(dir, WithFS(m))
		if err != nil {
			t.Fatal(err)
		}
		m.ops, m.cutAfter = 0, cut
		return m, op(j)
	}
	m, err := run(-1)
	if err != nil {
		t.Fatal(err)
	}
	total := m.ops
	seen := map[string]int{}
	states := 0
	for cut := 0; cut <= total; cut++ {
		m, err := run(cut)
		if cut < total && !errors.Is(err, errPowerCut) {
			t.Fatalf("cut after %d/%d operations: error %v, want the power cut", cut, total, err)
		}
		if cut == total && err != nil {
			t.Fatalf("no cut: %v", err)
		}
		for _, st := range m.crashStates() {
			st.desc = fmt.Sprintf("cut after %d/%d operations, %s", cut, total, st.desc)
			o := outcome(t, st, old, new)
			if cut == total && o != "new" {
				t.Fatalf("%s: the completed operation did not survive the power cut", st.desc)
			}
			seen[o]++
			states++
			afterPowerCut(t, st)
		}
	}
	if seen["old"] == 0 || seen["new"] == 0 {
		t.Fatalf("outcomes %v: the model never produced both the old and the new record", seen)
	}
	t.Logf("%d operations, %d crash states: %v", total, states, seen)
}

func TestSavePowerCut(t *testing.T) {
	old, new := rec("download", 65536), rec("download", 131072)
	saveOld := func(m *memFS) {
		j, err := Open(m.dir, WithFS(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Save(old); err != nil {
			t.Fatal(err)
		}
	}
	save := func(j *Journal) error { return j.Save(new) }
	t.Run("no journal", func(t *testing.T) {
		cutEverywhere(t, func(*memFS) {}, save, nil, new)
	})
	t.Run("old journal", func(t *testing.T) {
		cutEverywhere(t, saveOld, save, old, new)
	})
	t.Run("old journal and leftover temp", func(t *testing.T) {
		cutEverywhere(t, func(m *memFS) {
			saveOld(m)
			m.put(DefaultName+".tmp-99", encode([]byte(`{"step":"stale"}`))[:20])
		}, save, old, new)
	})
}

func TestClearPowerCut(t *testing.T) {
	old := rec("install", 1<<20)
	cutEverywhere(t, func(m *memFS) {
		j, err := Open(m.dir, WithFS(m))
		if err != nil {
			t.Fatal(err)
		}
		if err := j.Save(old); err != nil {
			t.Fatal(err)
		}
		m.put(DefaultName+".tmp-7", []byte("aduflash-journal v1"))
	}, (*Journal).Clear, old, nil)
}

func TestConcurrentSaves(t *testing.T) {
	check := func(t *testing.T, j *Journal, n int) {
		var wg sync.WaitGroup
		errs := make(chan error, 3*n)
		for g := range 2 {
			wg.Go(func() {
				for i := range n {
					if err := j.Save(rec(fmt.Sprintf("writer%d", g), int64(i))); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Go(func() {
			for range n {
				var got record
				found, err := j.Load(&got)
				if err != nil {
					errs <- err
				} else if found && !strings.HasPrefix(got.Step, "writer") {
					errs <- fmt.Errorf("Load returned %+v", got)
				}
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var got record
		if found, err := j.Load(&got); !found || err != nil || got.Download.Offset != int64(n-1) {
			t.Fatalf("final Load = %v, %v, %+v", found, err, got)
		}
	}
	t.Run("memfs", func(t *testing.T) {
		m := newMemFS("/data")
		m.yield = true
		check(t, mustOpen(t, "/data", WithFS(m)), 300)
		if m.overlap {
			t.Fatal("two Saves were in progress at the same time")
		}
		if names := m.names(); !slices.Equal(names, []string{DefaultName}) {
			t.Fatalf("folder holds %v", names)
		}
	})
	t.Run("os", func(t *testing.T) {
		dir := t.TempDir()
		check(t, mustOpen(t, dir), 40)
		if names := dirNames(t, dir); !slices.Equal(names, []string{DefaultName}) {
			t.Fatalf("folder holds %v", names)
		}
	})
}

func TestEncodeDecode(t *testing.T) {
	for _, p := range []string{`{}`, `null`, `"x"`, `{"a":[1,2,3]}`} {
		data := encode([]byte(p))
		got, reason := decode(data)
		if reason != "" || string(got) != p {
			t.Errorf("decode(encode(%s)) = %q, %q", p, got, reason)
		}
	}
	// The longest header fits the header bound.
	if h := header(0xffffffff, 1<<63-1); len(h) > maxHeader {
		t.Errorf("header %q is %d bytes, bound %d", h, len(h), maxHeader)
	}
}

// FuzzLoad feeds arbitrary bytes as the journal file: Load must not panic,
// must fail only with ErrCorrupt, and must accept only canonical files.
func FuzzLoad(f *testing.F) {
	f.Add(encode([]byte(`{"step":"download","download":{"offset":65536}}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newMemFS("/j")
		m.put(DefaultName, data)
		j, err := Open("/j", WithFS(m))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		found, err := j.Load(&v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || found {
				t.Fatalf("Load = %v, %v; want only ErrCorrupt", found, err)
			}
			return
		}
		if !found {
			t.Fatal("existing file not found")
		}
		payload, reason := decode(data)
		if reason != "" || !bytes.Equal(encode(payload), data) || !json.Valid(payload) {
			t.Fatalf("accepted a non-canonical file %q (%s)", data, reason)
		}
	})
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
