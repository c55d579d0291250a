package memfs

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
	"testing"
)

// AfterCut keeps each folder's synced entries plus the prefix of its changes that keep
// asks for; a SyncDir makes only its own folder's changes durable.
func TestAfterCut(t *testing.T) {
	m := New()
	m.Put("/a/old", []byte("old"))
	tmp, ino := m.CreateTemp("/a", "new.tmp-*")
	ino.Data = []byte("new")
	if err := m.Rename(tmp, "/a/old"); err != nil {
		t.Fatal(err)
	}
	other, _ := m.CreateTemp("/b", "x-*")
	if tmp != "/a/new.tmp-1" || other != "/b/x-2" {
		t.Fatalf("temporary names %s %s", tmp, other)
	}
	var order []string
	m.AfterCut(func(dir string, n int) int { order = append(order, dir); return 0 })
	if !slices.Equal(order, []string{"/a", "/b"}) {
		t.Fatalf("keep asked for the folders %v, want those with changes in the order of their first", order)
	}
	cut := func(keep map[string]int) map[string]string {
		entries := m.AfterCut(func(dir string, n int) int { return min(keep[dir], n) })
		out := map[string]string{}
		for p, ino := range entries {
			out[p] = string(ino.Data)
		}
		return out
	}
	for _, c := range []struct {
		keep map[string]int
		want map[string]string
	}{
		{map[string]int{}, map[string]string{"/a/old": "old"}},
		{map[string]int{"/a": 1}, map[string]string{"/a/old": "old", "/a/new.tmp-1": "new"}},
		{map[string]int{"/a": 2, "/b": 1}, map[string]string{"/a/old": "new", "/b/x-2": ""}},
	} {
		if got := cut(c.keep); !maps.Equal(got, c.want) {
			t.Errorf("keep %v: %v, want %v", c.keep, got, c.want)
		}
	}
	m.SyncDir("/a")
	if got, want := cut(map[string]int{}), map[string]string{"/a/old": "new"}; !maps.Equal(got, want) {
		t.Errorf("after SyncDir(/a): %v, want %v", got, want)
	}
	if m.Unsynced() != 1 {
		t.Errorf("%d unsynced changes, want /b's one", m.Unsynced())
	}
	m.Restore(m.AfterCut(func(string, int) int { return 0 }))
	if names := m.ReadDir("/b"); len(names) != 0 || m.Unsynced() != 0 {
		t.Errorf("restored without /b's change: /b holds %v, %d unsynced", names, m.Unsynced())
	}
}

// ReadFile returns at most limit+1 bytes; missing files are fs.ErrNotExist.
func TestReadAndErrors(t *testing.T) {
	m := New()
	m.Put("/d/f", []byte("0123456789"))
	if b, err := m.ReadFile("/d/f", 3); err != nil || string(b) != "0123" {
		t.Errorf("ReadFile limit 3: %q %v", b, err)
	}
	if names := m.ReadDir("/d"); !slices.Equal(names, []string{"f"}) {
		t.Errorf("ReadDir: %v", names)
	}
	for name, err := range map[string]error{
		"ReadFile": func() error { _, err := m.ReadFile("/d/nope", 1); return err }(),
		"Rename":   m.Rename("/d/nope", "/d/x"),
		"Remove":   m.Remove("/d/nope"),
	} {
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s of a missing file: %v", name, err)
		}
	}
	if err := m.Remove("/d/f"); err != nil || len(m.ReadDir("/d")) != 0 {
		t.Errorf("Remove: %v, left %v", err, m.ReadDir("/d"))
	}
}
