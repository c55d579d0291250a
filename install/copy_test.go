package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/slots"
)

// running puts data into the running bank's slot called name (a file of d) and opens it for
// reading, as the agent opens the slot a copy comes from.
func (d *device) running(t *testing.T, name string, data []byte) slots.Reader {
	t.Helper()
	if err := os.WriteFile(filepath.Join(d.dir, strings.Replace(name, "-a", "-A", 1)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := d.layout.OpenReader(d.slot(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// A slot copy writes the source slot's bytes into the target and reads them back against the
// source; a second copy finds them there and writes nothing.
func TestCopySlot(t *testing.T) {
	d := newDevice(t)
	data := testData(11, 3<<20+333)
	src := Source{Size: int64(len(data)), Copy: d.running(t, "rootfs-a", data)}
	in := d.installer(t)
	rec, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil)
	if err != nil || !rec.Done || rec.Format != FormatCopy || rec.Info == nil || rec.Info.RawSize != int64(len(data)) {
		t.Fatalf("copy: %v, %+v", err, rec)
	}
	if !bytes.Equal(d.file("rootfs-b"), data) || rec.Stats.BytesWritten != int64(len(data)) {
		t.Fatalf("the slot does not hold the copy (stats %+v)", rec.Stats)
	}
	rec, err = in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil)
	if err != nil || !rec.Done || rec.Stats.BytesWritten != 0 || rec.Stats.BytesSkipped != int64(len(data)) || rec.Stats.Syncs != 0 {
		t.Fatalf("copy again (compared, no writer opened): %v, stats %+v", err, rec.Stats)
	}
	// A dry run compares too: identical, nothing would be written.
	in.DryRun = true
	if rec, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil); err != nil || rec.Stats.BytesSkipped != int64(len(data)) {
		t.Fatalf("dry run: %v, stats %+v", err, rec.Stats)
	}
}

// A copy cut short resumes from its record where it stopped, without reading or writing
// again what is before the cursor, and ends with the whole slot.
func TestCopySlotResume(t *testing.T) {
	d := newDevice(t)
	data := testData(12, 3<<20+333)
	if err := os.WriteFile(filepath.Join(d.dir, "rootfs-B"), testData(13, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	src := Source{Size: int64(len(data)), Copy: d.running(t, "rootfs-a", data)}
	in := d.installer(t)
	last := d.installCut(t, in, src)
	if last.Format != FormatCopy || last.Cursor == nil || last.Cursor.Offset == 0 || last.Download.Offset != last.Cursor.Offset {
		t.Fatalf("resume record %+v", last)
	}
	rec, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), &last)
	if err != nil || !rec.Done || !bytes.Equal(d.file("rootfs-b")[:len(data)], data) {
		t.Fatalf("resumed: %v, done %v", err, rec.Done)
	}
	if got := rec.Stats.BytesWritten + rec.Stats.BytesSkipped; got != src.Size-last.Cursor.Offset {
		t.Fatalf("the resumed copy went over %d bytes, want the %d after the cursor", got, src.Size-last.Cursor.Offset)
	}
}

// flaky is a source slot whose reads fail, or return other bytes, at one offset.
type flaky struct {
	slots.Reader
	at   int64
	err  error
	flip int // reads of at still to return a flipped byte
}

func (f *flaky) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.Reader.ReadAt(p, off)
	if off <= f.at && f.at < off+int64(n) {
		if f.err != nil {
			return 0, f.err
		}
		if f.flip > 0 {
			f.flip--
			p[f.at-off] ^= 1
		}
	}
	return n, err
}

// A source that cannot be read fails the copy (ErrRead); one that read wrong once is caught
// by the read-back, which reads it again (ErrVerify).
func TestCopySlotSourceFails(t *testing.T) {
	d := newDevice(t)
	data := testData(14, 2<<20)
	r := d.running(t, "rootfs-a", data)
	ioErr := errors.New("uncorrectable ECC error")
	for _, tc := range []struct {
		name string
		src  *flaky
		want error
	}{
		{"unreadable", &flaky{Reader: r, at: 1<<20 + 5, err: ioErr}, ErrRead},
		{"read wrong once", &flaky{Reader: r, at: 1<<20 + 5, flip: 1}, ErrVerify},
	} {
		if err := os.Remove(filepath.Join(d.dir, "rootfs-B")); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		_, err := d.installer(t).Install(context.Background(), Source{Size: int64(len(data)), Copy: tc.src}, d.target(t, "rootfs-b"), nil)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, src := range []Source{{Size: 10, Copy: r, SHA256: make([]byte, 32)}, {Size: int64(len(data)) + 1, Copy: r}} {
		if _, err := d.installer(t).Install(context.Background(), src, d.target(t, "rootfs-b"), nil); !errors.Is(err, ErrSource) {
			t.Errorf("source %+v: %v", src, err)
		}
	}
}

// memSlot is a slot's content in memory.
type memSlot struct{ *bytes.Reader }

func (m memSlot) Size() int64  { return m.Reader.Size() }
func (m memSlot) Close() error { return nil }

// Without a known content size a copy takes the whole source slot, cut to the target's
// capacity only where the source is erased past it.
func TestCopySize(t *testing.T) {
	data := testData(15, 100<<10)
	erasedTail := append(bytes.Clone(data), bytes.Repeat([]byte{0xFF}, 28<<10)...)
	dataTail := bytes.Clone(erasedTail)
	dataTail[len(dataTail)-10] = 0
	for _, tc := range []struct {
		name     string
		src      []byte
		capacity int64
		want     int64
		err      error
	}{
		{"smaller than the capacity", erasedTail, 1 << 20, int64(len(erasedTail)), nil},
		{"no limit", erasedTail, 0, int64(len(erasedTail)), nil},
		{"erased past the capacity", erasedTail, 112 << 10, 112 << 10, nil},
		{"data past the capacity", dataTail, 112 << 10, 0, slots.ErrTooLarge},
	} {
		n, err := CopySize(memSlot{bytes.NewReader(tc.src)}, tc.capacity)
		if n != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%s: %d, %v; want %d, %v", tc.name, n, err, tc.want, tc.err)
		}
	}
}
