package install

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/mtd"
	"github.com/aduflash/aduflash/slots"
)

// ubiVolume behaves as a UBI volume under UBI_IOCVOLUP: an update erases the volume and
// sets its update marker, a read of a volume with the marker set fails (the kernel's EBADF),
// and only an update that received all its announced bytes clears it. cut > 0 makes the
// power fail once that many bytes of an update were written.
type ubiVolume struct {
	mu       sync.Mutex
	data     []byte
	reserved int64
	marker   bool
	updates  []int64 // the size of each update started
	cut      int64
}

var errUBICut = errors.New("power cut during the volume update")

type ubiUpdate struct {
	v    *ubiVolume
	size int64
	buf  bytes.Buffer
}

func (v *ubiVolume) Update(size int64) (io.WriteCloser, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.updates = append(v.updates, size)
	v.data, v.marker = nil, true
	return &ubiUpdate{v: v, size: size}, nil
}

func (v *ubiVolume) ReservedSize() int64 { return v.reserved }

func (v *ubiVolume) ReadAt(p []byte, off int64) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.marker {
		return 0, errors.New("ubi: damaged volume, update marker is set")
	}
	if off >= int64(len(v.data)) {
		return 0, io.EOF
	}
	n := copy(p, v.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (u *ubiUpdate) Write(p []byte) (int, error) {
	u.v.mu.Lock()
	defer u.v.mu.Unlock()
	if u.v.cut > 0 && int64(u.buf.Len()+len(p)) >= u.v.cut {
		n := int(u.v.cut) - u.buf.Len()
		u.buf.Write(p[:n])
		u.v.cut = 0
		return n, errUBICut
	}
	return u.buf.Write(p)
}

func (u *ubiUpdate) Close() error {
	u.v.mu.Lock()
	defer u.v.mu.Unlock()
	if int64(u.buf.Len()) != u.size {
		return fmt.Errorf("update of %d bytes closed after %d: %w", u.size, u.buf.Len(), mtd.ErrUpdateSize)
	}
	u.v.data, u.v.marker = bytes.Clone(u.buf.Bytes()), false
	return nil
}

// onUBI makes bank B's rootfs slot of the case's device a UBI volume, vol.
func (c *adaptiveCase) onUBI(t *testing.T, vol *ubiVolume) {
	t.Helper()
	cfg, err := slots.ParseConfig(fmt.Appendf(nil, `[slots]
sync_interval = "64KiB"
[[slots.slot]]
class = "rootfs"
bank = "A"
type = "file"
path = %q
size = "4MiB"
[[slots.slot]]
class = "rootfs"
bank = "B"
type = "ubi"
ubi_volume = "rootfs_b"
`, filepath.Join(c.d.dir, "rootfs-A")))
	if err != nil {
		t.Fatal(err)
	}
	c.d.layout = slots.NewLayout(cfg, slots.Env{Cmdline: filepath.Join(c.d.dir, "cmdline"),
		OpenVolume: func(s *slots.Slot) (slots.Volume, error) {
			if s.UBIVolume != "rootfs_b" {
				return nil, fmt.Errorf("no volume %q", s.UBIVolume)
			}
			return vol, nil
		}})
}

// An adaptive install into a UBI volume streams the assembled payload as one volume update
// of its exact size, in order, and reads it back. After a power cut in the middle of it (the
// volume left with its update marker, unreadable), the install from the record saved starts
// a new update at 0 (UBI cannot continue one) and fetches again at most what bank A lacks:
// never the whole image, and it does not read the damaged volume as a source.
func TestAdaptiveIntoUBIVolume(t *testing.T) {
	c := newAdaptiveCase(t)
	vol := &ubiVolume{reserved: 4 << 20}
	c.onUBI(t, vol)
	rec, err := c.install(t, c.d.installer(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Format != FormatAdaptive || rec.Adaptive.Fallback != "" || !bytes.Equal(vol.data, c.new) {
		t.Fatalf("format %s, adaptive %+v; the volume holds %d bytes (want the %d of the payload)", rec.Format, rec.Adaptive, len(vol.data), len(c.new))
	}
	if len(vol.updates) != 1 || vol.updates[0] != int64(len(c.new)) {
		t.Fatalf("volume updates %v, want one of %d bytes", vol.updates, len(c.new))
	}
	whole := rec.Adaptive
	if whole.Fetched > int64(len(c.img))/10 {
		t.Fatalf("fetched %d bytes of a %d-byte image", whole.Fetched, len(c.img))
	}

	vol.cut = int64(len(c.new)) * 2 / 3
	in := c.d.installer(t)
	var saved *Record
	in.Save = func(r Record) error {
		r.Header = bytes.Clone(r.Header)
		saved = &r
		return nil
	}
	if _, err := c.install(t, in, nil); !errors.Is(err, errUBICut) {
		t.Fatalf("install with the power cut at byte %d of the update: %v", len(c.new)*2/3, err)
	}
	if !vol.marker {
		t.Fatal("the cut update left the volume without its update marker")
	}
	if saved != nil && saved.Cursor.Offset != 0 {
		t.Fatalf("the cut install saved a resume point at %d: a UBI update has none inside it", saved.Cursor.Offset)
	}
	rec, err = c.install(t, c.d.installer(t), saved)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(vol.data, c.new) || vol.marker || len(vol.updates) != 3 || vol.updates[2] != int64(len(c.new)) {
		t.Fatalf("after the resumed install: %d bytes in the volume, marker %v, updates %v", len(vol.data), vol.marker, vol.updates)
	}
	ad := rec.Adaptive
	if rec.Format != FormatAdaptive || ad.Fallback != "" || ad.Planned > whole.Planned || ad.Fetched > whole.Fetched {
		t.Fatalf("the resumed install: format %s, adaptive %+v; from the start it planned %d bytes", rec.Format, ad, whole.Planned)
	}
	t.Logf("fetched %d bytes, then %d again after the cut (of a %d-byte image)", whole.Fetched, ad.Fetched, len(c.img))
}
