package ubootenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// Interop with libubootenv-tool (fw_printenv/fw_setenv) and u-boot-tools (mkenvimage).

const (
	fwPrintenv = "/usr/bin/fw_printenv"
	fwSetenv   = "/usr/bin/fw_setenv"
	mkenvimage = "/usr/bin/mkenvimage"
)

func needEnvTools(t *testing.T) {
	t.Helper()
	for _, p := range []string{fwPrintenv, fwSetenv, mkenvimage} {
		if _, err := os.Stat(p); err != nil {
			peers.Missing(t, "%s not found (apt-get install -y --no-install-recommends libubootenv-tool u-boot-tools)", p)
		}
	}
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// printenv runs fw_printenv -c cfg and returns its variables sorted by name.
func printenv(t *testing.T, cfg string) []Var {
	t.Helper()
	var vars []Var
	for _, l := range strings.Split(strings.TrimSpace(runTool(t, fwPrintenv, "-c", cfg)), "\n") {
		if l == "" {
			continue
		}
		n, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("fw_printenv line %q", l)
		}
		vars = append(vars, Var{n, v})
	}
	return SortVars(vars)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

var interopVars = []Var{
	{"bootcmd", "run distro_bootcmd; echo a b=c"},
	{"bootcount", "0"},
	{"bootlimit", "3"},
	{"upgrade_available", "0"},
	{"empty_after", "x"},
}

func TestInteropOursReadByFwPrintenvSingle(t *testing.T) {
	needEnvTools(t)
	dir := t.TempDir()
	for _, padFF := range []bool{false, true} {
		f := Format{Size: 0x4000, PadFF: padFF}
		img := filepath.Join(dir, fmt.Sprintf("single-%v.bin", padFF))
		writeFile(t, img, mustEncode(t, interopVars, f, 0))
		cfg := filepath.Join(dir, "single.config")
		writeFile(t, cfg, []byte(img+" 0x0 0x4000\n"))
		if got, want := printenv(t, cfg), SortVars(interopVars); !reflect.DeepEqual(got, want) {
			t.Fatalf("padFF=%v: fw_printenv %v, want %v", padFF, got, want)
		}
	}
}

// flagCase is a redundant env state: flags of both copies and whether a copy is torn.
type flagCase struct {
	f1, f2     byte
	bad1, bad2 bool
}

var serialCases = []flagCase{
	{f1: 1, bad2: true}, {f2: 1, bad1: true},
	{f1: 5, f2: 6}, {f1: 6, f2: 5}, {f1: 0xff, f2: 0}, {f1: 0, f2: 0xff},
	{f1: 0x7f, f2: 0x80}, {f1: 3, f2: 3}, {f1: 3, f2: 2}, {f1: 0xfe, f2: 0xff},
	{f1: 2, f2: 3, bad2: true}, // newest copy torn → older copy
}

func (c flagCase) String() string {
	return fmt.Sprintf("%02x%s/%02x%s", c.f1, map[bool]string{true: "(torn)"}[c.bad1], c.f2, map[bool]string{true: "(torn)"}[c.bad2])
}

func redundantImages(t *testing.T, c flagCase, f Format) (b1, b2 []byte) {
	t.Helper()
	b1 = mustEncode(t, append([]Var{{"copy", "1"}}, interopVars...), f, c.f1)
	b2 = mustEncode(t, append([]Var{{"copy", "2"}, {"only2", "yes"}}, interopVars...), f, c.f2)
	if c.bad1 {
		b1[f.HeaderSize()+3] ^= 0x55
	}
	if c.bad2 {
		b2[f.HeaderSize()+3] ^= 0x55
	}
	return b1, b2
}

func TestInteropOursReadByFwPrintenvRedundant(t *testing.T) {
	needEnvTools(t)
	dir := t.TempDir()
	f := Format{Size: 0x2000, Redundant: true}
	for _, layout := range []string{"two-files", "one-file-two-offsets"} {
		for _, c := range serialCases {
			t.Run(layout+"/"+c.String(), func(t *testing.T) {
				b1, b2 := redundantImages(t, c, f)
				cfg := filepath.Join(dir, "redund.config")
				var storages []Storage
				if layout == "two-files" {
					p1, p2 := filepath.Join(dir, "env1.bin"), filepath.Join(dir, "env2.bin")
					writeFile(t, p1, b1)
					writeFile(t, p2, b2)
					writeFile(t, cfg, []byte(p1+" 0x0 0x2000\n"+p2+" 0x0 0x2000\n"))
					storages = []Storage{&FileStorage{Path: p1}, &FileStorage{Path: p2}}
				} else {
					disk := filepath.Join(dir, "disk.img")
					writeFile(t, disk, make([]byte, 0x10000))
					writeAt(t, disk, 0x4000, b1)
					writeAt(t, disk, 0x8000, b2)
					writeFile(t, cfg, []byte(disk+" 0x4000 0x2000\n"+disk+" 0x8000 0x2000\n"))
					storages = []Storage{&FileStorage{Path: disk, Offset: 0x4000}, &FileStorage{Path: disk, Offset: 0x8000}}
				}
				theirs := printenv(t, cfg)
				e, err := New(Options{Format: Format{Size: 0x2000}}, storages...)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(e.All(), theirs) {
					t.Fatalf("ours %v\nfw_printenv %v", e.All(), theirs)
				}
				want := fmt.Sprint(e.Info().Current + 1)
				if v, _ := e.Get("copy"); v != want {
					t.Fatalf("copy %s, current %s", v, want)
				}
			})
		}
	}
}

func TestInteropFwSetenvWritesWeRead(t *testing.T) {
	needEnvTools(t)
	dir := t.TempDir()
	envTxt := filepath.Join(dir, "env.txt")
	writeFile(t, envTxt, []byte("bootcount=0\nbootlimit=3\nupgrade_available=0\nboot_slot=a\n"))
	r := filepath.Join(dir, "r.bin")
	runTool(t, mkenvimage, "-r", "-s", "0x4000", "-o", r, envTxt)
	disk := filepath.Join(dir, "disk.img")
	writeFile(t, disk, make([]byte, 0x10000))
	rb, _ := os.ReadFile(r)
	writeAt(t, disk, 0x4000, rb)
	cfg := filepath.Join(dir, "redund.config")
	writeFile(t, cfg, []byte(disk+" 0x4000 0x4000\n"+disk+" 0x8000 0x4000\n"))
	lock := filepath.Join(dir, "lock")
	open := func() *Env {
		t.Helper()
		e, err := New(Options{Format: Format{Size: 0x4000}, LockPath: lock},
			&FileStorage{Path: disk, Offset: 0x4000}, &FileStorage{Path: disk, Offset: 0x8000})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	check := func(step string, wantCur int, wantFlags byte) {
		t.Helper()
		e := open()
		if got, theirs := SortVars(e.All()), printenv(t, cfg); !reflect.DeepEqual(got, theirs) {
			t.Fatalf("%s: ours %v, fw_printenv %v", step, got, theirs)
		}
		in := e.Info()
		if in.Current != wantCur || in.Copies[wantCur].Flags != wantFlags {
			t.Fatalf("%s: current copy %d flags %#x, want copy %d flags %#x", step, in.Current+1, in.Copies[in.Current].Flags, wantCur+1, wantFlags)
		}
	}
	check("mkenvimage -r", 0, 1)
	runTool(t, fwSetenv, "-c", cfg, "bootcount", "1")
	check("fw_setenv 1", 1, 2)
	runTool(t, fwSetenv, "-c", cfg, "bootcount", "2")
	check("fw_setenv 2", 0, 3)
	script := filepath.Join(dir, "script.txt")
	writeFile(t, script, []byte("boot_slot=b\nupgrade_available=1\nbootcount=\n"))
	runTool(t, fwSetenv, "-c", cfg, "-s", script)
	check("fw_setenv -s", 1, 4)
	e := open()
	if _, ok := e.Get("bootcount"); ok {
		t.Fatal("script did not delete bootcount")
	}
	// our transaction continues the sequence, fw_setenv continues ours
	if err := e.Set(Change{"bootcount", "0"}, Change{"upgrade_available", ""}); err != nil {
		t.Fatal(err)
	}
	check("ours", 0, 5)
	if v := strings.TrimSpace(runTool(t, fwPrintenv, "-c", cfg, "-n", "bootcount")); v != "0" {
		t.Fatalf("fw_printenv -n bootcount = %q", v)
	}
	runTool(t, fwSetenv, "-c", cfg, "x", "after ours")
	check("fw_setenv after ours", 1, 6)

	// wrap-around: force flags 0xfe/0xff, write with both tools in turn
	e = open()
	cur := e.Info().Current
	offs := []int64{0x4000, 0x8000}
	writeAt(t, disk, offs[cur]+4, []byte{0xff})   // flags are outside the CRC
	writeAt(t, disk, offs[1-cur]+4, []byte{0xfe}) // older copy stays older
	check("forced ff", cur, 0xff)
	runTool(t, fwSetenv, "-c", cfg, "wrap", "1")
	check("fw_setenv wrap", 1-cur, 0)
	e = open()
	if err := e.Set(Change{"wrap", "2"}); err != nil {
		t.Fatal(err)
	}
	check("ours after wrap", cur, 1)
}

func TestInteropMkenvimageWeRead(t *testing.T) {
	needEnvTools(t)
	dir := t.TempDir()
	envTxt := filepath.Join(dir, "env.txt")
	writeFile(t, envTxt, []byte("# comment\nbootcmd=run a; run b\nbootdelay=0\n\nz=last\na=first\n"))
	want := SortVars([]Var{{"bootcmd", "run a; run b"}, {"bootdelay", "0"}, {"z", "last"}, {"a", "first"}})
	for _, tc := range []struct {
		name string
		args []string
		f    Format
	}{
		{"single", []string{"-s", "0x4000"}, Format{Size: 0x4000}},
		{"single-pad00", []string{"-s", "0x4000", "-p", "0"}, Format{Size: 0x4000}},
		{"redundant", []string{"-r", "-s", "0x2000"}, Format{Size: 0x2000, Redundant: true}},
		{"redundant-pad00", []string{"-r", "-s", "0x2000", "-p", "0x00"}, Format{Size: 0x2000, Redundant: true}},
		{"bigendian", []string{"-b", "-s", "0x1000"}, Format{Size: 0x1000, BigEndian: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".bin")
			runTool(t, mkenvimage, append(append(tc.args, "-o", out), envTxt)...)
			blob, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Decode(blob, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			// mkenvimage keeps input order; compare as sets via sorting
			got := SortVars(b.Vars)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v want %v", got, want)
			}
			if tc.f.Redundant && b.Flags != 1 {
				t.Fatalf("flags %#x", b.Flags)
			}
			// our encoding of the same (sorted) variables with the same padding is byte-identical
			sorted := filepath.Join(dir, tc.name+"-sorted.txt")
			var sb strings.Builder
			for _, v := range want {
				sb.WriteString(v.Name + "=" + v.Value + "\n")
			}
			writeFile(t, sorted, []byte(sb.String()))
			runTool(t, mkenvimage, append(append(tc.args, "-o", out), sorted)...)
			theirs, _ := os.ReadFile(out)
			f := tc.f
			f.PadFF = !strings.Contains(strings.Join(tc.args, " "), "-p")
			if ours := mustEncode(t, want, f, 1); !bytes.Equal(ours, theirs) {
				t.Fatalf("%s: our blob differs from mkenvimage's", tc.name)
			}
		})
	}
}

func TestInteropFwSetenvDefaultsOnBlank(t *testing.T) {
	needEnvTools(t)
	dir := t.TempDir()
	disk := filepath.Join(dir, "blank.img")
	writeFile(t, disk, bytes.Repeat([]byte{0xff}, 0x8000))
	cfg := filepath.Join(dir, "c")
	writeFile(t, cfg, []byte(disk+" 0x0 0x4000\n"+disk+" 0x4000 0x4000\n"))
	defs := filepath.Join(dir, "defaults.txt")
	writeFile(t, defs, []byte("bootdelay=2\nslot=a\n"))
	// we write the first valid copy from defaults; fw_printenv reads it
	dv, err := ParseDefaults([]byte("bootdelay=2\nslot=a\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Format: Format{Size: 0x4000}, Defaults: dv},
		&FileStorage{Path: disk}, &FileStorage{Path: disk, Offset: 0x4000})
	if err != nil {
		t.Fatal(err)
	}
	if !e.Info().UsingDefaults {
		t.Fatal("blank env not detected")
	}
	if err := e.Set(Change{"slot", "b"}); err != nil {
		t.Fatal(err)
	}
	if got := printenv(t, cfg); !reflect.DeepEqual(got, []Var{{"bootdelay", "2"}, {"slot", "b"}}) {
		t.Fatal(got)
	}
}

// TestInteropLockExcludesFwSetenv holds libubootenv's default lock and checks that
// fw_setenv waits for it (flock on the same path).
func TestInteropLockExcludesFwSetenv(t *testing.T) {
	needEnvTools(t)
	unlock, err := lockFile(DefaultLockPath)
	if err != nil {
		t.Skipf("cannot take %s here: %v", DefaultLockPath, err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "e.bin")
	writeFile(t, img, mustEncode(t, interopVars, Format{Size: 0x1000}, 0))
	cfg := filepath.Join(dir, "c")
	writeFile(t, cfg, []byte(img+" 0 0x1000\n"))
	cmd := exec.Command(fwSetenv, "-c", cfg, "locked", "no")
	if err := cmd.Start(); err != nil {
		unlock()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		unlock()
		t.Fatalf("fw_setenv finished while we held the lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	unlock()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("fw_setenv still blocked")
	}
	got := printenv(t, cfg)
	i := sort.Search(len(got), func(i int) bool { return got[i].Name >= "locked" })
	if i == len(got) || got[i].Value != "no" {
		t.Fatal(got)
	}
}

// libubootenv's default env file: with it, fw_setenv starts from it over any invalid area.
const fwDefaultEnv = "/etc/u-boot-initial-env"

// TestInteropRefuseOverwritingInvalid: a config whose size is wrong reads a good env
// (mkenvimage, 0x20000 bytes) as corrupt. fw_setenv without a default env refuses to write
// (libubootenv 0.3.2 exits 243) and so do we, even when starting from defaults (ErrNotBlank), unless told to
// overwrite. A blank area (all 0xff, all 0x00) is a first write for both.
func TestInteropRefuseOverwritingInvalid(t *testing.T) {
	needEnvTools(t)
	if _, err := os.Stat(fwDefaultEnv); err == nil {
		t.Skipf("%s exists: fw_setenv would start from it instead of refusing", fwDefaultEnv)
	}
	dir := t.TempDir()
	txt := filepath.Join(dir, "env.txt")
	writeFile(t, txt, []byte("bootcmd=run distro_bootcmd\nbootdelay=3\n"))
	img := filepath.Join(dir, "env.bin")
	runTool(t, mkenvimage, "-s", "0x20000", "-o", img, txt)
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "fw_env.config")
	writeFile(t, cfg, []byte(img+" 0x0 0x4000\n"))
	lock := filepath.Join(dir, "lock")
	open := func(path string, force bool) *Env {
		t.Helper()
		e, err := New(Options{Format: Format{Size: 0x4000}, HasDefaults: true, LockPath: lock, OverwriteInvalid: force}, &FileStorage{Path: path})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	unchanged := func(who string) {
		t.Helper()
		if now, _ := os.ReadFile(img); !bytes.Equal(now, orig) {
			t.Fatalf("%s changed the env", who)
		}
	}

	out, err := exec.Command(fwSetenv, "-c", cfg, "bootdelay", "9").CombinedOutput()
	if err == nil {
		t.Fatalf("fw_setenv wrote over the misread env: %s", out)
	}
	unchanged("fw_setenv")
	if err := open(img, false).Set(Change{"bootdelay", "9"}); !errors.Is(err, ErrNotBlank) {
		t.Fatalf("ours: %v", err)
	}
	unchanged("our refused Set")
	if err := open(img, true).Set(Change{"bootdelay", "9"}); err != nil {
		t.Fatal(err)
	}
	if got := printenv(t, cfg); !reflect.DeepEqual(got, []Var{{"bootdelay", "9"}}) {
		t.Fatalf("forced: fw_printenv %v", got)
	}

	empty := filepath.Join(dir, "empty.txt")
	writeFile(t, empty, nil)
	for _, fill := range []byte{0xff, 0x00} {
		for _, who := range []string{"ours", "fw_setenv -f"} {
			blankImg := filepath.Join(dir, "blank.bin")
			writeFile(t, blankImg, bytes.Repeat([]byte{fill}, 0x4000))
			blankCfg := filepath.Join(dir, "blank.config")
			writeFile(t, blankCfg, []byte(blankImg+" 0x0 0x4000\n"))
			if who == "ours" {
				if err := open(blankImg, false).Set(Change{"bootdelay", "9"}); err != nil {
					t.Fatalf("%#02x: %v", fill, err)
				}
			} else {
				runTool(t, fwSetenv, "-c", blankCfg, "-f", empty, "bootdelay", "9")
			}
			if got := printenv(t, blankCfg); !reflect.DeepEqual(got, []Var{{"bootdelay", "9"}}) {
				t.Fatalf("%s on %#02x: fw_printenv %v", who, fill, got)
			}
		}
	}
}
