package grubenv

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func menderDir(t *testing.T) Mender {
	t.Helper()
	m := Mender{Dir: t.TempDir()}
	for i := 1; i <= 2; i++ {
		env, lock := m.paths(i)
		if err := os.MkdirAll(filepath.Dir(env), 0o755); err != nil {
			t.Fatal(err)
		}
		e := New()
		e.Set("mender_boot_part", "2")
		e.Set("upgrade_available", "0")
		e.Set("bootcount", "0")
		if err := WriteFile(env, e); err != nil {
			t.Fatal(err)
		}
		l := New()
		l.Set("editing", "0")
		if err := WriteFile(lock, l); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestMenderUpdate(t *testing.T) {
	m := menderDir(t)
	_, lock1 := m.paths(1)
	lockBefore, _ := os.ReadFile(lock1)
	err := m.Update(func(e *Env) error {
		e.Set("mender_boot_part", "3")
		return e.Set("upgrade_available", "1")
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		env, _ := m.paths(i)
		e, err := ReadFile(env)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := e.Get("mender_boot_part"); v != "3" {
			t.Fatalf("copy %d: %q", i, v)
		}
		if !m.lockOK(i) {
			t.Fatalf("lock %d left editing", i)
		}
	}
	if lockAfter, _ := os.ReadFile(lock1); string(lockAfter) != string(lockBefore) {
		t.Fatal("lock bytes changed (Mender's lock.sha256sum would no longer match)")
	}
}

func TestMenderInterrupted(t *testing.T) {
	m := menderDir(t)
	// Power cut while copy 1 was being written: lock 1 says editing, env 1 is garbage.
	env1, _ := m.paths(1)
	if err := m.setLock(1, "1"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(env1, []byte("garbage"), 0o644)
	e, err := m.Read()
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get("mender_boot_part"); v != "2" {
		t.Fatalf("read from copy 2: %q", v)
	}
	// Update repairs copy 1 (its size falls back to the source's).
	if err := m.Update(func(e *Env) error { return e.Set("bootcount", "1") }); err != nil {
		t.Fatal(err)
	}
	e1, err := ReadFile(env1)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e1.Get("bootcount"); v != "1" || !m.lockOK(1) {
		t.Fatalf("copy 1 not repaired: %q", v)
	}
	// Both locks bad: refuse.
	m.setLock(1, "1")
	m.setLock(2, "1")
	if _, err := m.Read(); !errors.Is(err, ErrMenderCorrupt) {
		t.Fatalf("got %v", err)
	}
	if err := m.Update(func(*Env) error { return nil }); !errors.Is(err, ErrMenderCorrupt) {
		t.Fatalf("got %v", err)
	}
}
