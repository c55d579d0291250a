// Command benchadaptive measures adaptive installs on image pairs (scripts/bench-adaptive):
// benchadaptive -dir DIR A:B... reads DIR/A.ext4 and DIR/B.ext4 (and .sqfs) and prints, per
// pair, the bytes an adaptive install of B on a device holding A fetches over loopback HTTP
// (the index built with A as the base of delta frames),
// against the zstd image, zstd --patch-from and a 4 KiB block-hash index, and the install's
// wall time against a full install. -runs N times N installs of each kind, interleaved (full,
// adaptive, full, …), and gives the median of each and every ratio; -bytes=false skips
// patch-from and the 4 KiB index (for timing alone).
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
	"slices"
	"strings"
	"time"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

func main() {
	dir := flag.String("dir", ".", "folder of the images")
	flag.StringVar(&cpuProfile, "cpuprofile", "", "write CPU profiles of the first adaptive and full installs to `FILE`.fs and FILE.fs.full")
	flag.IntVar(&runs, "runs", 1, "time `N` installs of each kind, interleaved")
	flag.BoolVar(&sizes, "bytes", true, "measure patch-from and the 4 KiB index")
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

// The flags: cpuProfile names the files of -cpuprofile ("": none); runs is -runs, sizes -bytes.
var (
	cpuProfile string
	runs       int
	sizes      bool
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
	patch, blocks := int64(-1), int64(-1)
	if sizes {
		if patch, err = patchFrom(work, pa, pb); err != nil {
			return err
		}
		blocks = blockIndex(old, newb)
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := img
		if r.URL.Path == "/b.aduchunks" {
			data = store.Bytes()
		}
		http.ServeContent(w, r, "f", time.Unix(1.7e9, 0), bytes.NewReader(data))
	}))
	defer srv.Close()
	sum := sha256.Sum256(img)
	full := install.Source{URL: srv.URL + "/b.aduimg", Size: int64(len(img)), SHA256: sum[:]}
	ad := full
	ad.Adaptive = &install.Adaptive{Index: x, StoreURL: srv.URL + "/b.aduchunks", Held: []install.Held{{Name: "A", R: bytes.NewReader(old), Size: int64(len(old))}}}
	var rec install.Record
	var fullTimes, adTimes, ratios, cpuRatios []float64
	var fullStages, adStages []string
	for i := range max(runs, 1) {
		_, fullT, err := installOnce(work, old, full, kr, profileName(i, fs+".full"))
		if err != nil {
			return err
		}
		r, adT, err := installOnce(work, old, ad, kr, profileName(i, fs))
		if err != nil {
			return err
		}
		fullTime, adTime := fullT.wall, adT.wall
		fullStages, adStages = append(fullStages, fullT.stages()), append(adStages, adT.stages())
		if r.Adaptive == nil || r.Adaptive.Fallback != "" || r.Format != install.FormatAdaptive {
			return fmt.Errorf("no adaptive install: %+v", r.Adaptive)
		}
		rec = r
		fullTimes, adTimes = append(fullTimes, fullTime.Seconds()), append(adTimes, adTime.Seconds())
		ratios = append(ratios, adTime.Seconds()/fullTime.Seconds())
		cpuRatios = append(cpuRatios, adT.cpu.Seconds()/fullT.cpu.Seconds())
	}
	fetched := rec.Adaptive.Fetched + int64(len(idx))
	fmt.Printf("%-12s %-6s %10s %10s %10s %10s %10s %8s %8s %7.2fs %7.2f×\n", a+"→"+b, fs, mb(int64(len(img))), mb(patch), mb(blocks),
		mb(fetched), mb(int64(len(idx))), ratio(fetched, patch), ratio(fetched, blocks), median(adTimes), median(adTimes)/median(fullTimes))
	if runs > 1 {
		fmt.Printf("  full %s\n  adaptive %s\n  ÷ full %s\n  CPU ÷ full %s\n", list(fullTimes, "%.2fs"), list(adTimes, "%.2fs"), list(ratios, "%.2f×"), list(cpuRatios, "%.2f×"))
		fmt.Printf("  full: before the write + write + read-back %s\n  adaptive: the same %s\n", strings.Join(fullStages, ","), strings.Join(adStages, ","))
	}
	return nil
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

func list(v []float64, format string) string {
	var b strings.Builder
	for _, x := range v {
		fmt.Fprintf(&b, " "+format, x)
	}
	return b.String()
}

// profileName is the file of the CPU profile of install i of a kind ("": none, only the
// first is profiled).
func profileName(i int, kind string) string {
	if cpuProfile == "" || i > 0 {
		return ""
	}
	return cpuProfile + "." + kind
}

// profile starts a CPU profile into file ("": none).
func profile(file string) (stop func(), err error) {
	if file == "" {
		return func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// mb and ratio print "-" for what was not measured (negative).
func mb(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f MB", float64(n)/1e6)
}

func ratio(n, of int64) string {
	if of < 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", float64(n)/float64(of))
}

// timing is what an install took: wall and CPU time (of the process: the HTTP server's
// included), and both when its stages began (install.Meter), from its start.
type timing struct {
	wall, cpu                 time.Duration
	write, verify             time.Duration
	writeCPU, verifyCPU, cpu0 time.Duration
}

// stages prints the wall (and CPU) time before the write (header, and an adaptive install's
// scan), of the write and of the read-back.
func (t timing) stages() string {
	return fmt.Sprintf(" %.2f+%.2f+%.2fs (CPU %.2f+%.2f+%.2fs)", t.write.Seconds(), (t.verify - t.write).Seconds(), (t.wall - t.verify).Seconds(),
		t.writeCPU.Seconds(), (t.verifyCPU - t.writeCPU).Seconds(), (t.cpu - t.verifyCPU).Seconds())
}

// stageClock notes when the install's stages begin.
type stageClock struct {
	start time.Time
	t     *timing
}

func (c stageClock) Stage(name string, _ int64) {
	switch name {
	case install.StageWrite:
		c.t.write, c.t.writeCPU = time.Since(c.start), cpuTime()-c.t.cpu0
	case install.StageReadBack:
		c.t.verify, c.t.verifyCPU = time.Since(c.start), cpuTime()-c.t.cpu0
	}
}

func (stageClock) Add(int64) {}

// installOnce installs src into a fresh file slot B of a device running A (holding old), with
// a CPU profile into prof ("": none), and times it.
func installOnce(work string, old []byte, src install.Source, kr *image.Keyring, prof string) (install.Record, timing, error) {
	cmdline := filepath.Join(work, "cmdline")
	os.WriteFile(cmdline, []byte("adu.slot=A\n"), 0o644)
	os.WriteFile(filepath.Join(work, "slot-A"), old, 0o644)
	os.Remove(filepath.Join(work, "slot-B"))
	cfg, err := slots.ParseConfig([]byte(fmt.Sprintf("[slots]\n[[slots.slot]]\nclass = \"rootfs\"\nbank = \"A\"\ntype = \"file\"\npath = %q\n[[slots.slot]]\nclass = \"rootfs\"\nbank = \"B\"\ntype = \"file\"\npath = %q\n",
		filepath.Join(work, "slot-A"), filepath.Join(work, "slot-B"))))
	if err != nil {
		return install.Record{}, timing{}, err
	}
	l := slots.NewLayout(cfg, slots.Env{Cmdline: cmdline})
	s, err := l.Slot("rootfs-b")
	if err != nil {
		return install.Record{}, timing{}, err
	}
	t, err := l.Prepare(s)
	if err != nil {
		return install.Record{}, timing{}, err
	}
	stop, err := profile(prof)
	if err != nil {
		return install.Record{}, timing{}, err
	}
	var tm timing
	start := time.Now()
	tm.cpu0 = cpuTime()
	rec, err := (&install.Installer{Keyring: kr, Meter: stageClock{start, &tm}}).Install(context.Background(), src, t, nil)
	tm.wall, tm.cpu = time.Since(start), cpuTime()-tm.cpu0
	stop()
	return rec, tm, err
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
