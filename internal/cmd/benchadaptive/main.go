// Command benchadaptive measures adaptive installs on image pairs (scripts/bench-adaptive):
// benchadaptive -dir DIR A:B... reads DIR/A.ext4 and DIR/B.ext4 (and .sqfs) and prints, per
// pair, the bytes an adaptive install of B on a device holding A fetches over loopback HTTP
// (the index built with A as the base of delta frames),
// against the zstd image, zstd --patch-from and a 4 KiB block-hash index, and the install's
// wall time against a full install.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

func main() {
	dir := flag.String("dir", ".", "folder of the images")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the adaptive installs to `FILE`")
	flag.BoolVar(&quick, "quick", false, "bytes only: no zstd --patch-from and no full install to time against (their columns are 0)")
	flag.Parse()
	fmt.Printf("%-12s %-6s %10s %10s %10s %10s %10s %8s %8s %8s %8s\n", "pair", "fs", "B zstd", "patch", "4K index", "adaptive", "(index)", "/patch", "/4K", "time", "/full")
	for _, pair := range flag.Args() {
		a, b, _ := strings.Cut(pair, ":")
		for _, fs := range []string{"ext4", "sqfs"} {
			if err := measure(*dir, a, b, fs); err != nil {
				fmt.Fprintln(os.Stderr, "benchadaptive:", pair, fs, err)
				os.Exit(3)
			}
		}
	}
}

// cpuProfile names the file of -cpuprofile ("": none); quick is -quick.
var (
	cpuProfile string
	quick      bool
)

func measure(dir, a, b, fs string) error {
	work, err := os.MkdirTemp(dir, "run")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	pa, pb := filepath.Join(dir, a+"."+fs), filepath.Join(dir, b+"."+fs)
	old, err := os.ReadFile(pa)
	if err != nil {
		return err
	}
	newb, err := os.ReadFile(pb)
	if err != nil {
		return err
	}
	key, _ := image.GenerateKey(image.Ed25519, rand.Reader)
	kr, _ := image.NewKeyring(key.Public())
	imgPath := filepath.Join(work, "b.aduimg")
	f, err := os.Create(imgPath)
	if err != nil {
		return err
	}
	if _, _, err := image.Sign(f, bytes.NewReader(newb), int64(len(newb)), key, image.SignOptions{Version: "2", SlotClass: "rootfs", ChunkSize: 1 << 20, Compression: image.CompressZstd}); err != nil {
		return err
	}
	f.Close()
	img, _ := os.ReadFile(imgPath)
	var store bytes.Buffer
	x, err := adaptive.IndexImage(bytes.NewReader(img), kr, adaptive.DefaultParams, &store, &adaptive.Base{R: bytes.NewReader(old), Size: int64(len(old))})
	if err != nil {
		return err
	}
	idx := x.Encode()
	var patch int64 = 1
	if !quick {
		if patch, err = patchFrom(work, pa, pb); err != nil {
			return err
		}
	}
	blocks := blockIndex(old, newb)

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := img
		if r.URL.Path == "/b.aduchunks" {
			data = store.Bytes()
		}
		http.ServeContent(w, r, "f", time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	sum := sha256.Sum256(img)
	src := install.Source{URL: srv.URL + "/b.aduimg", Size: int64(len(img)), SHA256: sum[:]}
	fullTime := time.Duration(1)
	if !quick {
		if _, fullTime, err = installOnce(work, old, src, kr); err != nil {
			return err
		}
	}
	src.Adaptive = &install.Adaptive{Index: x, StoreURL: srv.URL + "/b.aduchunks", Held: []install.Held{{Name: "A", R: bytes.NewReader(old), Size: int64(len(old))}}}
	stop, err := profile(fs)
	if err != nil {
		return err
	}
	rec, adTime, err := installOnce(work, old, src, kr)
	stop()
	if err != nil {
		return err
	}
	if rec.Adaptive == nil || rec.Adaptive.Fallback != "" || rec.Format != install.FormatAdaptive {
		return fmt.Errorf("no adaptive install: %+v", rec.Adaptive)
	}
	fetched := rec.Adaptive.Fetched + int64(len(idx))
	fmt.Printf("%-12s %-6s %10s %10s %10s %10s %10s %7.2f× %7.2f× %7.2fs %7.2f×\n", a+"→"+b, fs, mb(int64(len(img))), mb(patch), mb(blocks),
		mb(fetched), mb(int64(len(idx))), float64(fetched)/float64(patch), float64(fetched)/float64(blocks), adTime.Seconds(), adTime.Seconds()/fullTime.Seconds())
	return nil
}

// profile starts the CPU profile of one adaptive install (-cpuprofile FILE: FILE.fs).
func profile(fs string) (stop func(), err error) {
	if cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(cpuProfile + "." + fs)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

// installOnce installs src into a fresh file slot B of a device running A (holding old).
func installOnce(work string, old []byte, src install.Source, kr *image.Keyring) (install.Record, time.Duration, error) {
	cmdline := filepath.Join(work, "cmdline")
	os.WriteFile(cmdline, []byte("adu.slot=A\n"), 0o644)
	os.WriteFile(filepath.Join(work, "slot-A"), old, 0o644)
	os.Remove(filepath.Join(work, "slot-B"))
	cfg, err := slots.ParseConfig([]byte(fmt.Sprintf("[slots]\n[[slots.slot]]\nclass = \"rootfs\"\nbank = \"A\"\ntype = \"file\"\npath = %q\n[[slots.slot]]\nclass = \"rootfs\"\nbank = \"B\"\ntype = \"file\"\npath = %q\n",
		filepath.Join(work, "slot-A"), filepath.Join(work, "slot-B"))))
	if err != nil {
		return install.Record{}, 0, err
	}
	l := slots.NewLayout(cfg, slots.Env{Cmdline: cmdline})
	s, err := l.Slot("rootfs-b")
	if err != nil {
		return install.Record{}, 0, err
	}
	t, err := l.Prepare(s)
	if err != nil {
		return install.Record{}, 0, err
	}
	start := time.Now()
	rec, err := (&install.Installer{Keyring: kr}).Install(context.Background(), src, t, nil)
	return rec, time.Since(start), err
}

// patchFrom is the size of zstd --patch-from=a b (level 9, long mode: level 19 takes minutes per pair here).
func patchFrom(work, a, b string) (int64, error) {
	out := filepath.Join(work, "patch.zst")
	cmd := exec.Command("zstd", "-q", "-f", "-9", "--long=30", "-T0", "--patch-from="+a, b, "-o", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("zstd --patch-from: %w", err)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// blockIndex sums the 4 KiB blocks of b whose SHA-256 no block of a has (RAUC's
// block-hash-index: what it fetches, uncompressed).
func blockIndex(a, b []byte) int64 {
	have := map[[32]byte]bool{}
	for off := 0; off < len(a); off += 4096 {
		have[sha256.Sum256(a[off:min(off+4096, len(a))])] = true
	}
	var n int64
	for off := 0; off < len(b); off += 4096 {
		blk := b[off:min(off+4096, len(b))]
		if !have[sha256.Sum256(blk)] {
			n += int64(len(blk))
		}
	}
	return n
}
