package slots

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/mtd/mtdsim"
)

// A slot of the running bank is read as its writer laid it out (raw NAND: bad blocks
// skipped), up to the size it holds, and without a single flash operation.
func TestOpenReaderFlash(t *testing.T) {
	fs := newFakeSystem(t, "adu.slot=A")
	doc := strings.Replace(layoutDoc, `mtd = "fw_a"`, "mtd = \"fw_a\"\nsize = \"512KiB\"\nreserve_blocks = 2", 1)
	l := fs.layout(t, doc)
	devA := nand(t, 1*mib, mtdsim.WithFactoryBad(1))
	raw := payload(300*kib, 4)
	w, err := NewFlashWriter(devA, "fw-a", 0, 512*kib, int64(len(raw)), nil)
	must(t, err)
	_, err = w.Write(raw)
	must(t, err)
	must(t, w.Finish())
	before := devA.Counters().Ops
	l.Env.OpenFlash = func(s *Slot) (Flash, error) { return devA, nil }

	a, _ := l.Slot("fw-a")
	r, err := l.OpenReader(a)
	must(t, err)
	defer r.Close()
	// 8 blocks of 64 KiB, 1 bad; the reserve is for writers.
	if r.Size() != 7*64*kib {
		t.Fatalf("size %d, want %d", r.Size(), 7*64*kib)
	}
	got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
	must(t, err)
	if !bytes.Equal(got[:len(raw)], raw) || !bytes.Equal(got[len(raw):], bytes.Repeat([]byte{0xFF}, len(got)-len(raw))) {
		t.Fatal("the reader does not see what the writer wrote")
	}
	if n, err := r.ReadAt(make([]byte, 10), r.Size()-5); n != 5 || err != io.EOF {
		t.Fatalf("read across the end: %d, %v", n, err)
	}
	if ops := devA.Counters().Ops; ops != before {
		t.Fatalf("reading the running bank's slot did %d flash operations", ops-before)
	}
	// Parallel reads, as io.ReaderAt allows (the race detector watches them in CI).
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			buf := make([]byte, 3000)
			for off := int64(g * 7000); off+int64(len(buf)) <= int64(len(raw)); off += 4 * 7000 {
				if _, err := r.ReadAt(buf, off); err != nil || !bytes.Equal(buf, raw[off:off+int64(len(buf))]) {
					t.Errorf("parallel read at %d: %v", off, err)
					return
				}
			}
		})
	}
	wg.Wait()
	// The capacity of the running bank's slot is measured without writing either.
	if c, err := l.Capacity(a); err != nil || c != 5*64*kib || devA.Counters().Ops != before {
		t.Fatalf("capacity %d, %v", c, err)
	}
}

// Block devices and files are read from the slot's offset, up to the configured size or
// the storage's end.
func TestOpenReaderBlockAndFile(t *testing.T) {
	fs := newFakeSystem(t, "adu.slot=A")
	part := payload(1*mib, 5)
	must(t, os.WriteFile(filepath.Join(fs.dev, "mmcblk0p2"), part, 0o644))
	file := filepath.Join(fs.root, "kernel-a.img")
	must(t, os.WriteFile(file, part[:100*kib], 0o644))
	doc := strings.Replace(layoutDoc, `partlabel = "rootfs_a"`, "partlabel = \"rootfs_a\"\noffset = \"64KiB\"", 1) +
		"[[slots.slot]]\nclass = \"kernel\"\nbank = \"A\"\ntype = \"file\"\npath = \"" + file + "\"\nsize = \"1MiB\"\n" +
		"[[slots.slot]]\nclass = \"kernel\"\nbank = \"B\"\ntype = \"file\"\npath = \"" + file + ".b\"\nsize = \"1MiB\"\n"
	l := fs.layout(t, doc)
	for _, tc := range []struct {
		slot string
		want []byte
	}{
		{"rootfs-a", part[64*kib:]},
		{"kernel-a", part[:100*kib]}, // the file is shorter than its size
	} {
		s, _ := l.Slot(tc.slot)
		r, err := l.OpenReader(s)
		must(t, err)
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		must(t, err)
		if r.Size() != int64(len(tc.want)) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: read %d bytes (size %d), want %d", tc.slot, len(got), r.Size(), len(tc.want))
		}
		must(t, r.Close())
	}
	s, _ := l.Slot("kernel-b")
	if _, err := l.OpenReader(s); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
}
