package install

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/slots"
)

// benchSize is the payload of BenchmarkInstall; scripts/bench-agent measures the whole binary
// against curl with 1 GiB.
const benchSize = 128 << 20

// BenchmarkInstall installs an aduimg image over HTTP (127.0.0.1) into a file slot, as the
// agent does: file hash, signature, chunk hashes, slot write with resume points, read-back.
// Run it with TMPDIR on a tmpfs (e.g. /dev/shm) to leave the disk out.
func BenchmarkInstall(b *testing.B) {
	raw := testData(11, benchSize)
	srv := newServer(b)
	for _, comp := range []image.Compression{image.CompressNone, image.CompressZstd} {
		b.Run(comp.String(), func(b *testing.B) {
			file := aduimgOf(b, raw, "2.0", func(o *image.SignOptions) { o.ChunkSize, o.Compression = image.DefaultChunkSize, comp })
			src := srv.put("bench-"+comp.String(), file)
			tg, slot := benchTarget(b)
			in := (&device{}).installer(b)
			in.Save = func(Record) error { return nil }
			b.SetBytes(benchSize)
			b.ReportMetric(float64(len(file))/benchSize, "image/raw")
			for b.Loop() {
				// Every install starts from an empty slot, as on a device whose spare bank
				// holds another image (no identical units skipped).
				if err := os.Remove(slot); err != nil && !os.IsNotExist(err) {
					b.Fatal(err)
				}
				if _, err := in.Install(context.Background(), src, tg, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchTarget is a file slot of its own, large enough for the benchmark's payload, and the
// path of its file.
func benchTarget(b *testing.B) (*slots.Target, string) {
	dir := b.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("adu.slot=A\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	doc := "[slots]\n"
	for _, bank := range []string{"A", "B"} {
		doc += fmt.Sprintf("[[slots.slot]]\nclass = \"rootfs\"\nbank = %q\ntype = \"file\"\npath = %q\n", bank, filepath.Join(dir, "rootfs-"+bank))
	}
	cfg, err := slots.ParseConfig([]byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	l := slots.NewLayout(cfg, slots.Env{Cmdline: cmdline})
	s, err := l.Slot("rootfs-b")
	if err != nil {
		b.Fatal(err)
	}
	tg, err := l.Prepare(s)
	if err != nil {
		b.Fatal(err)
	}
	return tg, filepath.Join(dir, "rootfs-B")
}
