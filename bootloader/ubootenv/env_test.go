package ubootenv

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustEncode(t *testing.T, vars []Var, f Format, flags byte) []byte {
	t.Helper()
	b, err := Encode(vars, f, flags)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvRedundantTransactions(t *testing.T) {
	f := Format{Size: 256, Redundant: true}
	c1 := &memStorage{buf: mustEncode(t, []Var{{"slot", "a"}, {"bootcount", "0"}}, f, 1)}
	c2 := &memStorage{buf: make([]byte, 256)} // blank: bad CRC
	e, err := New(Options{Format: Format{Size: 256}}, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if in := e.Info(); in.Current != 0 || !in.Copies[0].CRCOK || in.Copies[1].CRCOK || in.Scheme != FlagsSerial {
		t.Fatalf("info %+v", in)
	}
	if v, ok := e.Get("slot"); !ok || v != "a" {
		t.Fatal(v, ok)
	}
	// one transaction: set, add, delete → one write of copy 2 with flags 2
	if err := e.Set(Change{"slot", "b"}, Change{"upgrade_available", "1"}, Change{"bootcount", ""}); err != nil {
		t.Fatal(err)
	}
	if c1.writes != 0 || c2.writes != 1 || c2.buf[4] != 2 {
		t.Fatalf("writes %d/%d flags %#x", c1.writes, c2.writes, c2.buf[4])
	}
	want := []Var{{"slot", "b"}, {"upgrade_available", "1"}}
	if !reflect.DeepEqual(e.All(), want) || e.Info().Current != 1 {
		t.Fatalf("all %v info %+v", e.All(), e.Info())
	}
	// next transaction alternates back to copy 1 with flags 3
	if err := e.Set(Change{"bootcount", "1"}); err != nil {
		t.Fatal(err)
	}
	if c1.writes != 1 || c1.buf[4] != 3 || e.Info().Current != 0 {
		t.Fatalf("second: writes %d flags %#x %+v", c1.writes, c1.buf[4], e.Info())
	}
	// tear the newest copy (copy 1): the older copy 2 wins, the next write replaces copy 1
	c1.buf[100] ^= 0xFF
	if err := e.Reload(); err != nil {
		t.Fatal(err)
	}
	if e.Info().Current != 1 {
		t.Fatalf("torn: %+v", e.Info())
	}
	if _, ok := e.Get("bootcount"); ok {
		t.Fatal("torn copy's value visible")
	}
	if err := e.Set(Change{"x", "y"}); err != nil {
		t.Fatal(err)
	}
	if c1.writes != 2 || c1.buf[4] != 3 || e.Info().Current != 0 {
		t.Fatalf("after torn: %d %#x %+v", c1.writes, c1.buf[4], e.Info())
	}
}

func TestEnvSerialWrap(t *testing.T) {
	f := Format{Size: 64, Redundant: true}
	c1 := &memStorage{buf: mustEncode(t, []Var{{"a", "old"}}, f, 0xfe)}
	c2 := &memStorage{buf: mustEncode(t, []Var{{"a", "new"}}, f, 0xff)}
	e, err := New(Options{Format: Format{Size: 64}}, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get("a"); v != "new" {
		t.Fatal(v)
	}
	if err := e.Set(Change{"a", "wrapped"}); err != nil {
		t.Fatal(err)
	}
	if c1.buf[4] != 0 || e.Info().Current != 0 {
		t.Fatalf("flags %#x %+v", c1.buf[4], e.Info())
	}
}

func TestEnvBadInputWritesNothing(t *testing.T) {
	f := Format{Size: 64, Redundant: true}
	c1 := &memStorage{buf: mustEncode(t, []Var{{"a", "1"}}, f, 1)}
	c2 := &memStorage{buf: mustEncode(t, []Var{{"a", "0"}}, f, 0)}
	e, err := New(Options{Format: Format{Size: 64}, WriteList: []string{"a", "b"}}, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ch  []Change
		err error
	}{
		{[]Change{{"a", "2"}, {"b=c", "1"}}, ErrInvalidVar},
		{[]Change{{"a", "x\x00"}}, ErrInvalidVar},
		{[]Change{{"a", "2"}, {"c", "1"}}, ErrNotWritable},
		{[]Change{{"b", strings.Repeat("x", 100)}}, ErrTooLarge},
	} {
		if err := e.Set(tc.ch...); !errors.Is(err, tc.err) {
			t.Errorf("%v: %v", tc.ch, err)
		}
	}
	if c1.writes+c2.writes != 0 {
		t.Fatal("bad input wrote")
	}
	c2.failWrite = errors.New("boom")
	if err := e.Set(Change{"a", "2"}); err == nil || !strings.Contains(err.Error(), "copy 2") {
		t.Fatalf("write failure: %v", err)
	}
	if v, _ := e.Get("a"); v != "1" {
		t.Fatal(v)
	}
}

func TestEnvDefaults(t *testing.T) {
	c1 := &memStorage{buf: make([]byte, 64)}
	c2 := &memStorage{buf: make([]byte, 64)}
	if _, err := New(Options{Format: Format{Size: 64}}, c1, c2); !errors.Is(err, ErrNoValidCopy) {
		t.Fatalf("no defaults: %v", err)
	}
	defs, err := ParseDefaults([]byte("# comment\nbootcmd=run x\r\n\nnoequals\nbootdelay=3\nbootdelay=\nslot=a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(defs, []Var{{"bootcmd", "run x"}, {"slot", "a"}}) {
		t.Fatal(defs)
	}
	e, err := New(Options{Format: Format{Size: 64}, Defaults: defs}, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if in := e.Info(); !in.UsingDefaults || in.Current != -1 {
		t.Fatalf("%+v", in)
	}
	if err := e.Set(Change{"slot", "b"}); err != nil {
		t.Fatal(err)
	}
	if c1.writes != 1 || c2.writes != 0 || c1.buf[4] != 1 {
		t.Fatal("first write should go to copy 1 with flags 1")
	}
	if v, _ := e.Get("bootcmd"); v != "run x" {
		t.Fatal(v)
	}
	// single copy, empty defaults accepted explicitly
	s := &memStorage{buf: make([]byte, 64)}
	e, err = New(Options{Format: Format{Size: 64}, HasDefaults: true}, s)
	if err != nil || len(e.All()) != 0 {
		t.Fatal(err)
	}
	if err := e.Set(Change{"a", "1"}); err != nil || s.writes != 1 {
		t.Fatal(err)
	}
}

func TestEnvBooleanNOR(t *testing.T) {
	const es = 0x1000
	dev := newFakeMTD(4*es, es, 1, false)
	f := Format{Size: 0x800, Redundant: true}
	// copy 1 at 0, copy 2 at 0x2000; both valid with 03/02 (the trap): U-Boot uses copy 2
	copy(dev.data[0:], mustEncode(t, []Var{{"v", "one"}}, f, 3))
	copy(dev.data[0x2000:], mustEncode(t, []Var{{"v", "two"}}, f, 2))
	s1, err := NewMTDStorage("mtd0", dev, dev.geo(), 0, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewMTDStorage("mtd0", dev, dev.geo(), -0x2000, 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Format: Format{Size: 0x800}}, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	if in := e.Info(); in.Scheme != FlagsBoolean || in.Current != 1 {
		t.Fatalf("%+v", in)
	}
	if v, _ := e.Get("v"); v != "two" {
		t.Fatal(v)
	}
	if err := e.Set(Change{"v", "three"}); err != nil {
		t.Fatal(err)
	}
	// copy 1 erased and rewritten ACTIVE; copy 2's flag programmed OBSOLETE without erase
	if dev.data[4] != FlagActive || dev.data[0x2004] != FlagObsolete {
		t.Fatalf("flags %#x/%#x", dev.data[4], dev.data[0x2004])
	}
	if !reflect.DeepEqual(dev.erases, []int64{0}) {
		t.Fatalf("erases %v", dev.erases)
	}
	if e.Info().Current != 0 || dev.unlocks == 0 {
		t.Fatalf("%+v unlocks %d", e.Info(), dev.unlocks)
	}
	// copy 2 is still CRC-valid (flags are outside the CRC): 01/00 picks copy 1
	if !e.Info().Copies[1].CRCOK {
		t.Fatal("copy 2 CRC")
	}
	if err := e.Set(Change{"v", "four"}); err != nil {
		t.Fatal(err)
	}
	if dev.data[4] != FlagObsolete || dev.data[0x2004] != FlagActive || e.Info().Current != 1 {
		t.Fatalf("flags %#x/%#x", dev.data[4], dev.data[0x2004])
	}
	if v, _ := e.Get("v"); v != "four" {
		t.Fatal(v)
	}
}

func TestNORPreservesRestOfSector(t *testing.T) {
	dev := newFakeMTD(0x2000, 0x1000, 1, false)
	dev.data[0x1F00] = 0x12 // other data in the same sector, after the env
	s, err := NewMTDStorage("nor", dev, dev.geo(), 0x1100, 0, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Format: Format{Size: 0x100}, HasDefaults: true}, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set(Change{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	if dev.data[0x1F00] != 0x12 || dev.unlocks != 0 {
		t.Fatalf("sector data lost or unlock despite disable_lock")
	}
	if v, _ := e.Get("a"); v != "b" {
		t.Fatal(v)
	}
}

func TestNANDBadBlocks(t *testing.T) {
	const es, page = 0x4000, 0x800
	dev := newFakeMTD(16*es, es, page, true)
	f := Format{Size: 0x1000, Redundant: true}
	dev.bad[0] = true // copy 1's first block bad → env in block 1
	dev.bad[4*es] = true
	dev.bad[5*es] = true // copy 2 at block 4: blocks 4,5 bad → block 6
	s1, err := NewMTDStorage("nand", dev, dev.geo(), 0, es, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewMTDStorage("nand", dev, dev.geo(), 4*es, es, 4, false)
	if err != nil {
		t.Fatal(err)
	}
	if s1.DefaultScheme() != FlagsSerial {
		t.Fatal("NAND scheme")
	}
	copy(dev.data[es:], mustEncode(t, []Var{{"a", "1"}}, f, 1))
	for pg := int64(es); pg < es+0x1000; pg += page {
		dev.pageDirty[pg] = true
	}
	e, err := New(Options{Format: Format{Size: 0x1000}}, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := e.Get("a"); v != "1" || e.Info().Current != 0 {
		t.Fatalf("%q %+v", v, e.Info())
	}
	if err := e.Set(Change{"a", "2"}); err != nil {
		t.Fatal(err)
	}
	if dev.data[6*es+4] != 2 || !reflect.DeepEqual(dev.erases, []int64{6 * es}) {
		t.Fatalf("copy 2 not in block 6: erases %v", dev.erases)
	}
	if err := e.Set(Change{"a", "3"}); err != nil {
		t.Fatal(err)
	}
	if dev.data[es+4] != 3 {
		t.Fatal("copy 1 not rewritten in block 1")
	}
	// all blocks of copy 2 within num_sectors bad → the write fails, nothing else changes
	dev.bad[6*es], dev.bad[7*es] = true, true
	err = e.Set(Change{"a", "4"})
	if !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "within 4 sector(s)") {
		t.Fatalf("all bad: %v", err)
	}
	if dev.data[es+4] != 3 {
		t.Fatal("copy 1 touched")
	}
	if _, err := NewMTDStorage("nand", dev, dev.geo(), 0x800, es, 4, false); !errors.Is(err, ErrStorage) {
		t.Fatalf("unaligned: %v", err)
	}
	// boolean scheme needs an in-place flag write NAND cannot do
	if err := s1.WriteFlag(0); !errors.Is(err, ErrUnsupported) {
		t.Fatal(err)
	}
}

type memUBI struct {
	data    []byte
	updates int
}

func (u *memUBI) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > int64(len(u.data)) {
		return 0, errors.New("eof")
	}
	return copy(p, u.data[off:]), nil
}

type ubiWriter struct {
	u    *memUBI
	size int64
	buf  []byte
}

func (w *ubiWriter) Write(p []byte) (int, error) { w.buf = append(w.buf, p...); return len(p), nil }
func (w *ubiWriter) Close() error {
	if int64(len(w.buf)) != w.size {
		return errors.New("short update")
	}
	w.u.data = w.buf
	w.u.updates++
	return nil
}

type ubiAdapter struct{ *memUBI }

func (a ubiAdapter) Update(size int64) (io.WriteCloser, error) {
	return &ubiWriter{u: a.memUBI, size: size}, nil
}

func TestUBI(t *testing.T) {
	v1, v2 := &memUBI{data: make([]byte, 128)}, &memUBI{data: make([]byte, 128)}
	e, err := New(Options{Format: Format{Size: 128}, HasDefaults: true}, &UBIStorage{Vol: ubiAdapter{v1}, Name: "env"}, &UBIStorage{Vol: ubiAdapter{v2}, Name: "env_r"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := e.Set(Change{"n", string(rune('0' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	if v1.updates != 2 || v2.updates != 1 || v1.data[4] != 3 {
		t.Fatalf("updates %d/%d flags %d", v1.updates, v2.updates, v1.data[4])
	}
	sc := FlagsBoolean
	if _, err := New(Options{Format: Format{Size: 128}, Scheme: &sc}, &UBIStorage{Vol: ubiAdapter{v1}}, &UBIStorage{Vol: ubiAdapter{v2}}); !errors.Is(err, ErrConfig) {
		t.Fatalf("boolean on UBI: %v", err)
	}
}

func TestFileStorageOffsetsAndForceRO(t *testing.T) {
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(disk, make([]byte, 0x10000), 0o644); err != nil {
		t.Fatal(err)
	}
	sys := filepath.Join(dir, "sys")
	fro := filepath.Join(sys, "block", "mmcblk0boot1", "force_ro")
	if err := os.MkdirAll(filepath.Dir(fro), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fro, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := ForceROPath(sys, "/dev/mmcblk0boot1"); got != fro {
		t.Fatalf("ForceROPath %q", got)
	}
	if ForceROPath(sys, "/dev/mmcblk0p1") != "" || ForceROPath(sys, "/dev/mmcblk0") != "" {
		t.Fatal("non-boot partition got force_ro")
	}
	s1 := &FileStorage{Path: disk, Offset: 0x4000, ForceRO: fro}
	s2 := &FileStorage{Path: disk, Offset: -0x4000, ForceRO: fro}
	e, err := New(Options{Format: Format{Size: 0x2000}, HasDefaults: true, LockPath: filepath.Join(dir, "lock")}, s1, s2)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Set(Change{"a", "1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Set(Change{"a", "2"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(disk)
	f := Format{Size: 0x2000, Redundant: true}
	b1, err1 := Decode(raw[0x4000:0x6000], f)
	b2, err2 := Decode(raw[0xC000:0xE000], f)
	if err1 != nil || err2 != nil || b1.Flags != 1 || b2.Flags != 2 || b2.Vars[0].Value != "2" {
		t.Fatalf("%v %v %+v %+v", err1, err2, b1, b2)
	}
	if got, _ := os.ReadFile(fro); string(got) != "1" {
		t.Fatalf("force_ro not restored: %q", got)
	}
	// force_ro that cannot be read → the write fails before touching the device
	bad := &FileStorage{Path: disk, Offset: 0, ForceRO: filepath.Join(dir, "missing")}
	if err := bad.WriteCopy(make([]byte, 16)); !errors.Is(err, ErrStorage) {
		t.Fatal(err)
	}
	// offset past the end
	far := &FileStorage{Path: disk, Offset: 0xF000}
	if err := far.ReadCopy(make([]byte, 0x2000)); !errors.Is(err, ErrStorage) || !strings.Contains(err.Error(), "does not fit") {
		t.Fatal(err)
	}
}

func TestLockSerialises(t *testing.T) {
	dir := t.TempDir()
	lock := filepath.Join(dir, "fw.lock")
	unlock, err := lockFile(lock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	s := &memStorage{buf: make([]byte, 64)}
	go func() {
		_, err := New(Options{Format: Format{Size: 64}, HasDefaults: true, LockPath: lock}, s)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("New did not wait for the lock: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("New still blocked after unlock")
	}
	// A missing lock folder (no /var/lock on a lean root file system) is created.
	u, err := lockFile(filepath.Join(dir, "var", "lock", "fw.lock"))
	if err != nil {
		t.Fatalf("lock in a missing folder: %v", err)
	}
	u()
	// A lock path that cannot exist fails with ErrLock.
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := lockFile(filepath.Join(dir, "file", "fw.lock")); !errors.Is(err, ErrLock) {
		t.Fatal(err)
	}
}

// With no valid copy, Set writes a first copy only over blank copies: anything else may be a
// good env that the config misreads (here: an env of 0x200 bytes read as 0x40).
func TestEnvRefusesOverwritingInvalid(t *testing.T) {
	const size = 0x40
	bigEnv := func() []byte { return mustEncode(t, []Var{{"bootcmd", "run x"}}, Format{Size: 0x200}, 0) }
	fill := func(b byte) []byte { return bytes.Repeat([]byte{b}, size) }
	torn := mustEncode(t, []Var{{"a", "1"}}, Format{Size: size, Redundant: true}, 1)
	torn[20] ^= 0xff
	for _, tc := range []struct {
		name   string
		copies [][]byte
		force  bool
		want   error // nil: written
	}{
		{"single wrong size", [][]byte{bigEnv()}, false, ErrNotBlank},
		{"single wrong size, forced", [][]byte{bigEnv()}, true, nil},
		{"single erased", [][]byte{fill(0xff)}, false, nil},
		{"single zeroed", [][]byte{fill(0x00)}, false, nil},
		{"single almost erased", [][]byte{append(fill(0xff)[:size-1], 0xfe)}, false, ErrNotBlank},
		{"single unreadable", [][]byte{nil}, false, ErrNotBlank},
		{"redundant torn and erased", [][]byte{torn, fill(0xff)}, false, ErrNotBlank},
		{"redundant erased and torn", [][]byte{fill(0xff), torn}, false, ErrNotBlank},
		{"redundant both torn, forced", [][]byte{torn, torn}, true, nil},
		{"redundant erased and zeroed", [][]byte{fill(0xff), fill(0x00)}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st []Storage
			var mem []*memStorage
			for _, c := range tc.copies {
				m := &memStorage{buf: bytes.Clone(c)}
				st, mem = append(st, m), append(mem, m)
			}
			e, err := New(Options{Format: Format{Size: size}, HasDefaults: true, OverwriteInvalid: tc.force}, st...)
			if err != nil {
				t.Fatal(err)
			}
			err = e.Set(Change{"bootdelay", "9"})
			if tc.want == nil {
				if err != nil || mem[0].writes != 1 {
					t.Fatalf("err %v, %d writes of copy 1", err, mem[0].writes)
				}
				return
			}
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrNoValidCopy) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for i, m := range mem {
				if m.writes != 0 || !bytes.Equal(m.buf, tc.copies[i]) {
					t.Fatalf("copy %d written", i+1)
				}
			}
		})
	}
}
