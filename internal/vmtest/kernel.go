package vmtest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// CacheDir returns where vmtest keeps what it downloads and builds (the Debian kernel and
// its modules, initramfs bases): $ADUFLASH_CACHE/vmtest, else <user cache dir>/aduflash/vmtest.
func CacheDir() (string, error) {
	root := os.Getenv("ADUFLASH_CACHE")
	if root == "" {
		ucd, err := os.UserCacheDir()
		if err != nil {
			ucd = os.TempDir() // no $HOME or $XDG_CACHE_HOME
		}
		root = filepath.Join(ucd, "aduflash")
	}
	dir := filepath.Join(root, "vmtest")
	return dir, os.MkdirAll(dir, 0o755)
}

// kernel is a Debian amd64 kernel unpacked in the cache: the image and the subset of its
// modules vmtest puts into initramfs images.
type kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Dir     string // cache dir: vmlinuz, lib/modules/<Version>/...
}

func (k *kernel) Vmlinuz() string { return filepath.Join(k.Dir, "vmlinuz") }
func (k *kernel) ModDir() string  { return filepath.Join(k.Dir, "lib", "modules", k.Version) }

// defaultModules are the kernel modules (by name) copied into every image, with everything
// they depend on: MTD core and char/block devices, the simulated NAND and RAM/phram/block
// MTDs, UBI and UBIFS, and virtio disks for data exchange.
var defaultModules = []string{
	"mtd", "mtdblock", "mtd_blkdevs", "mtdram", "nandsim", "phram", "block2mtd",
	"ubi", "ubifs", "virtio_pci", "virtio_blk", "virtio_mmio",
}

// kernelVersion picks the kernel: $ADUFLASH_VM_KERNEL, else what Debian's linux-image-amd64
// depends on now (apt-cache), else the newest already in the cache.
func kernelVersion(cache string) (string, error) {
	if v := os.Getenv("ADUFLASH_VM_KERNEL"); v != "" {
		return v, nil
	}
	// apt-cache takes about a second: remember its answer until apt's lists change.
	stamp := ""
	if st, err := os.Stat("/var/lib/apt/lists"); err == nil {
		stamp = fmt.Sprintf("%d", st.ModTime().UnixNano())
		if b, err := os.ReadFile(filepath.Join(cache, "apt-kernel-version")); err == nil {
			if st, v, ok := strings.Cut(strings.TrimSpace(string(b)), " "); ok && st == stamp && v != "" {
				return v, nil
			}
		}
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if _, v, ok := strings.Cut(strings.TrimSpace(line), "Depends: linux-image-"); ok && strings.HasSuffix(v, "-amd64") {
				if stamp != "" {
					os.WriteFile(filepath.Join(cache, "apt-kernel-version"), []byte(stamp+" "+v+"\n"), 0o644)
				}
				return v, nil
			}
		}
	}
	ents, _ := filepath.Glob(filepath.Join(cache, "kernel-*", "vmlinuz"))
	if len(ents) > 0 {
		sort.Strings(ents)
		return strings.TrimPrefix(filepath.Base(filepath.Dir(ents[len(ents)-1])), "kernel-"), nil
	}
	if err == nil {
		err = errors.New("no linux-image-*-amd64 dependency listed (apt-get update?)")
	}
	return "", fmt.Errorf("vmtest: cannot find the Debian kernel version (apt-cache depends linux-image-amd64): %w", err)
}

// prepareKernel returns the cached kernel, fetching it on first use: apt-get download
// linux-image-<ver>, dpkg-deb -x, depmod -b, then keep vmlinuz and the module subset only.
func prepareKernel(cache string, logf func(string, ...any)) (*kernel, error) {
	ver, err := kernelVersion(cache)
	if err != nil {
		return nil, err
	}
	k := &kernel{Version: ver, Dir: filepath.Join(cache, "kernel-"+ver)}
	if _, err := os.Stat(filepath.Join(k.Dir, "ok")); err == nil {
		return k, nil
	}
	unlock, err := lockFile(filepath.Join(cache, "prepare.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(k.Dir, "ok")); err == nil {
		return k, nil
	}
	logf("vmtest: fetching Debian kernel linux-image-%s into %s", ver, cache)
	tmp, err := os.MkdirTemp(cache, "tmp-kernel-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	dl := exec.Command("apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "linux-image-"+ver)
	if os.Geteuid() != 0 {
		dl = exec.Command("apt-get", "download", "-q", "linux-image-"+ver)
	}
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmtest: apt-get download linux-image-%s: %v: %s", ver, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "linux-image-*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("vmtest: apt-get download left %d .deb files", len(debs))
	}
	root := filepath.Join(tmp, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmtest: dpkg-deb -x: %v: %s", err, out)
	}
	if out, err := exec.Command(depmodPath(), "-b", root, ver).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("vmtest: depmod -b: %v: %s", err, out)
	}
	// Keep only what images need.
	srcMods := filepath.Join(root, "lib", "modules", ver)
	deps, err := readModulesDep(filepath.Join(srcMods, "modules.dep"))
	if err != nil {
		return nil, err
	}
	files, err := moduleClosure(deps, defaultModules)
	if err != nil {
		return nil, err
	}
	stage := filepath.Join(tmp, "kernel")
	dstMods := filepath.Join(stage, "lib", "modules", ver)
	for _, rel := range append(files, "modules.dep", "modules.builtin", "modules.order") {
		if err := copyFile(filepath.Join(srcMods, rel), filepath.Join(dstMods, rel)); err != nil {
			return nil, err
		}
	}
	if err := copyFile(filepath.Join(root, "boot", "vmlinuz-"+ver), filepath.Join(stage, "vmlinuz")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(stage, "ok"), []byte(ver+"\n"), 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(k.Dir)
	if err := os.Rename(stage, k.Dir); err != nil {
		return nil, err
	}
	// Drop older kernels and their image bases (about 16 MB each).
	old, _ := filepath.Glob(filepath.Join(cache, "kernel-*"))
	bases, _ := filepath.Glob(filepath.Join(cache, "initramfs-base-*"))
	for _, p := range append(old, bases...) {
		if !strings.Contains(filepath.Base(p), "-"+ver) {
			os.RemoveAll(p)
		}
	}
	return k, nil
}

func depmodPath() string {
	if p, err := exec.LookPath("depmod"); err == nil {
		return p
	}
	return "/sbin/depmod"
}

// readModulesDep parses modules.dep: "kernel/x/a.ko: kernel/y/b.ko ..." (uncompressed or .ko.xz).
func readModulesDep(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	return deps, sc.Err()
}

func modName(rel string) string {
	b := filepath.Base(rel)
	b = b[:strings.Index(b, ".ko")]
	return strings.ReplaceAll(b, "-", "_")
}

// moduleClosure returns the module files (relative paths) for names and all their deps.
func moduleClosure(deps map[string][]string, names []string) ([]string, error) {
	byName := map[string]string{}
	for rel := range deps {
		byName[modName(rel)] = rel
	}
	seen := map[string]bool{}
	var add func(rel string)
	add = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		for _, d := range deps[rel] {
			add(d)
		}
	}
	for _, n := range names {
		rel, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			continue // built in, or not in this kernel: modprobe tells
		}
		add(rel)
	}
	if len(seen) == 0 {
		return nil, errors.New("vmtest: none of the MTD/UBI modules is in this kernel")
	}
	var out []string
	for rel := range seen {
		out = append(out, rel)
	}
	sort.Strings(out)
	return out, nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return os.WriteFile(dst, b, st.Mode().Perm())
}

// hostTool is a host binary copied into images, with the Debian package that has it.
type hostTool struct{ name, pkg string }

// hostTools go into every image (/usr/bin), with their shared libraries.
var hostTools = []hostTool{
	{"flash_erase", "mtd-utils"}, {"nandwrite", "mtd-utils"}, {"nanddump", "mtd-utils"},
	{"flashcp", "mtd-utils"}, {"mtdinfo", "mtd-utils"}, {"mtd_debug", "mtd-utils"},
	{"ubiformat", "mtd-utils"}, {"ubiattach", "mtd-utils"}, {"ubidetach", "mtd-utils"},
	{"ubimkvol", "mtd-utils"}, {"ubirmvol", "mtd-utils"}, {"ubiupdatevol", "mtd-utils"},
	{"ubinfo", "mtd-utils"}, {"ubinize", "mtd-utils"},
	{"fw_printenv", "libubootenv-tool"}, {"fw_setenv", "libubootenv-tool"},
}

// busyboxPath finds a statically linked busybox (Debian busybox-static).
func busyboxPath() (string, error) {
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			if isStatic(p) {
				return p, nil
			}
		}
	}
	return "", errors.New("static busybox not found (apt-get install busybox-static)")
}

func isStatic(p string) bool {
	out, err := exec.Command("ldd", p).CombinedOutput()
	return err != nil || bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked"))
}

// sharedLibs lists the libraries (and the dynamic loader) p needs, via ldd.
func sharedLibs(p string) ([]string, error) {
	out, err := exec.Command("ldd", p).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", p, err, out)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				libs = append(libs, f)
			}
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("ldd %s: %s", p, strings.TrimSpace(line))
		}
	}
	return libs, nil
}

// findTools locates busybox and the host tools; missing ones are reported by package.
func findTools() (busybox string, tools map[string]string, err error) {
	busybox, err = busyboxPath()
	if err != nil {
		return "", nil, err
	}
	tools = map[string]string{}
	missing := map[string][]string{}
	for _, t := range hostTools {
		p, err := exec.LookPath(t.name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
				if _, e := os.Stat(filepath.Join(dir, t.name)); e == nil {
					p, err = filepath.Join(dir, t.name), nil
					break
				}
			}
		}
		if err != nil {
			missing[t.pkg] = append(missing[t.pkg], t.name)
			continue
		}
		tools[t.name] = p
	}
	if len(missing) > 0 {
		var pk []string
		for p := range missing {
			pk = append(pk, p)
		}
		sort.Strings(pk)
		return "", nil, fmt.Errorf("host tools missing: %v (apt-get install %s)", missing, strings.Join(pk, " "))
	}
	return busybox, tools, nil
}

// buildBase writes (once per kernel and tool set) the cached initramfs base: busybox,
// the tools with their libraries, the module subset, /dev/console. The run-specific part
// (init, test binary, files) is a second archive appended to it.
func buildBase(cache string, k *kernel, busybox string, tools map[string]string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "v1 %s\n", k.Version)
	var names []string
	for n := range tools {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, p := range append([]string{busybox}, sortedPaths(tools, names)...) {
		st, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s %d %d\n", p, st.Size(), st.ModTime().UnixNano())
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	out := filepath.Join(cache, "initramfs-base-"+k.Version+"-"+key+".cpio")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	unlock, err := lockFile(filepath.Join(cache, "prepare.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp, err := os.CreateTemp(cache, "tmp-base-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	c := newCPIO(tmp)
	for _, d := range []string{"/proc", "/sys", "/dev", "/tmp", "/out", "/usr/bin", "/sbin", "/etc"} {
		c.Dir(d)
	}
	c.CharDev("/dev/console", 0o600, 5, 1)
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return "", err
	}
	c.File("/bin/busybox", 0o755, bb)
	c.Symlink("/bin/sh", "busybox")
	libs := map[string]bool{}
	for _, n := range names {
		b, err := os.ReadFile(tools[n])
		if err != nil {
			return "", err
		}
		c.File("/usr/bin/"+n, 0o755, b)
		ls, err := sharedLibs(tools[n])
		if err != nil {
			return "", err
		}
		for _, l := range ls {
			libs[l] = true
		}
	}
	var libList []string
	for l := range libs {
		libList = append(libList, l)
	}
	sort.Strings(libList)
	for _, l := range libList {
		b, err := os.ReadFile(l) // follows symlinks
		if err != nil {
			return "", err
		}
		c.File(l, 0o755, b)
	}
	err = filepath.Walk(k.ModDir(), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(k.Dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		c.File("/"+rel, 0o644, b)
		return nil
	})
	if err != nil {
		return "", err
	}
	if err := c.Close(); err != nil {
		return "", err
	}
	return out, atomicfile.Commit(atomicfile.OS{}, tmp, out)
}

func sortedPaths(m map[string]string, keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}
