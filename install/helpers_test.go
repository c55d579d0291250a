package install

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/imagetest"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/slots"
)

var (
	keyOnce sync.Once
	testKey crypto.Signer
)

// key is the image signing key of the tests, and kr a keyring that trusts it.
func key(t testing.TB) (crypto.Signer, *image.Keyring) {
	keyOnce.Do(func() {
		k, err := image.GenerateKey(image.Ed25519, rand.Reader)
		if err != nil {
			panic(err)
		}
		testKey = k
	})
	kr, err := image.NewKeyring(testKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return testKey, kr
}

func testData(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

// testChunkSize is the chunk size of the aduimg images aduimgOf signs.
const testChunkSize = 32 << 10

// changedChunk returns img with a byte of chunk i changed: its signature holds, the chunk's
// hash does not.
func changedChunk(t testing.TB, img []byte, i int) []byte {
	t.Helper()
	h, err := image.ParseHeader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(img)
	bad[h.Chunks[i].Offset+10] ^= 1
	return bad
}

// aduimgOf signs raw as an aduimg image of class rootfs, 32 KiB chunks.
func aduimgOf(t testing.TB, raw []byte, version string, mod func(*image.SignOptions)) []byte {
	t.Helper()
	k, _ := key(t)
	o := image.SignOptions{Version: version, SlotClass: "rootfs", ChunkSize: testChunkSize, Compression: image.CompressZstd,
		Created: time.Unix(1.7e9, 0)}
	if mod != nil {
		mod(&o)
	}
	var out imagetest.Buffer
	if _, _, err := image.Sign(&out, bytes.NewReader(raw), int64(len(raw)), k, o); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// mcubootOf signs raw as an MCUboot image with security counter sc.
func mcubootOf(t testing.TB, raw []byte, sc uint32) []byte {
	t.Helper()
	k, _ := key(t)
	img, err := mcuboot.Sign(raw, k, mcuboot.SignOptions{Version: mcuboot.Version{Major: 2}, HeaderSize: 0x200, PadHeader: true, SecurityCounter: &sc})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// server serves files over HTTP with Range support and records the Range of each request.
type server struct {
	*httptest.Server
	httpcount.Files
}

func newServer(t testing.TB) *server {
	s := &server{}
	s.Server = httptest.NewServer(&s.Files)
	t.Cleanup(s.Close)
	return s
}

// put serves data as name and returns its Source.
func (s *server) put(name string, data []byte) Source {
	s.Put("/"+name, data)
	sum := sha256.Sum256(data)
	return Source{URL: s.URL + "/" + name, Size: int64(len(data)), SHA256: sum[:]}
}

// device is a layout of file slots (rootfs and firmware in banks A and B) running bank A.
type device struct {
	dir    string
	layout *slots.Layout
}

func newDevice(t testing.TB) *device {
	t.Helper()
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("adu.slot=A\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var doc strings.Builder
	doc.WriteString("[slots]\nsync_interval = \"64KiB\"\n")
	for _, s := range []struct{ class, size string }{{"rootfs", "4MiB"}, {"firmware", "256KiB"}} {
		for _, bank := range []string{"A", "B"} {
			fmt.Fprintf(&doc, "[[slots.slot]]\nclass = %q\nbank = %q\ntype = \"file\"\npath = %q\nsize = %q\n",
				s.class, bank, filepath.Join(dir, s.class+"-"+bank), s.size)
		}
	}
	cfg, err := slots.ParseConfig([]byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	return &device{dir: dir, layout: slots.NewLayout(cfg, slots.Env{Cmdline: cmdline})}
}

// slot returns the slot called name.
func (d *device) slot(t testing.TB, name string) *slots.Slot {
	t.Helper()
	s, err := d.layout.Slot(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// target prepares the slot called name for a write.
func (d *device) target(t testing.TB, name string) *slots.Target {
	t.Helper()
	tg, err := d.layout.Prepare(d.slot(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// file returns what a slot's file holds (nil when it does not exist).
func (d *device) file(name string) []byte {
	b, _ := os.ReadFile(filepath.Join(d.dir, strings.Replace(name, "-b", "-B", 1)))
	return b
}

// holds reports whether slot name starts with want.
func (d *device) holds(name string, want []byte) bool {
	b := d.file(name)
	return len(b) >= len(want) && bytes.Equal(b[:len(want)], want)
}

// installCut installs src into rootfs-b with in, the power failing as the third resume
// record is saved, and returns the record before it: the one a resume starts from.
func (d *device) installCut(t testing.TB, in *Installer, src Source) Record {
	t.Helper()
	var saved []Record
	cut := errors.New("power cut")
	in.Save = func(r Record) error {
		saved = append(saved, r)
		if len(saved) == 3 {
			return cut
		}
		return nil
	}
	if _, err := in.Install(context.Background(), src, d.target(t, "rootfs-b"), nil); !errors.Is(err, cut) {
		t.Fatalf("install cut at its third record: %v", err)
	}
	in.Save = nil
	return saved[1]
}

func (d *device) installer(t testing.TB) *Installer {
	_, kr := key(t)
	return &Installer{Keyring: kr, Retry: download.RetryPolicy{Attempts: 2, Backoff: time.Millisecond}}
}
