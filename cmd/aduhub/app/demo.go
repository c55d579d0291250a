package app

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/progress"
	"github.com/aduflash/aduflash/devicesim"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/dps"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/httpcount"
	"github.com/aduflash/aduflash/internal/imagestep"
	"github.com/aduflash/aduflash/internal/testpayload"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/manifestgen"
)

func (e *env) demoCommand() *cli.Command {
	return &cli.Command{
		Name:      "demo",
		Usage:     "the whole update loop on this machine: hub, signed updates, simulated devices running the real agent",
		ArgsUsage: " ",
		Description: `Runs everything in one process, with no cloud account:
  - generates an image signing key (ed25519) and the Device Update signer (a root key that
    signs a signing key, as the service does);
  - builds two signed images of a root file system: version 2.0, and version 3.0 whose
    application will not come up; writes their import manifests and imports them into a
    local IoT Hub + Device Update stand-in (MQTT over TLS with a local CA, files over HTTP);
  - starts the simulated devices: two banks of simulated NAND flash, a U-Boot environment
    whose bootcount and rollback are simulated, and the real aduagent code, rebooting when
    it asks;
  - deploys 2.0: download (with a progress bar), write into bank B, pending, reboot, health
    check, confirm, success reported; then 3.0: written into bank A, reboot, the health check
    fails, bank A is marked bad, reboot back into B, Failed reported, the device still on 2.0.
  - with an MCU (--mcu, the default): each device has an MCU behind it (MCUboot and an SMP
    server on UDP at 127.0.0.1); 2.0 updates it too once the gateway confirmed bank B
    (upload, test, reset, health check, confirm), and 2.1 ships an MCU image whose
    application does not come up: the agent resets the MCU again, MCUboot reverts it, and
    2.1 is reported Failed with the MCU's health-check code (32000130);
  - deploys 3.1, 2.0 with a few changes, published with an adaptive index and chunk store:
    the device fetches only the chunks bank B lacks (the timeline says how many bytes),
    writes bank A, reboots into it and confirms it.
Prints a timeline and a summary table. Exit code 0 only if every step happened as described.

With --devices N, N devices take part at once; the timeline then shows the counts.

EXAMPLE:
   aduhub demo
   aduhub demo --devices 100`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "devices", Value: 1, Usage: "how many simulated devices (1–500)"},
			&cli.StringFlag{Name: "work", Usage: "keep the hub's data, keys and images in `DIR` (default: a temporary folder, removed)"},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Minute, Usage: "give up after this long"},
			&cli.BoolFlag{Name: "mcu", Value: true, Usage: "attach a simulated MCU to each device, updated by 2.0 and by the failing 2.1 (--mcu=false: the gateways alone)"},
		},
		Action: e.demo,
	}
}

// demo is one run of the demo.
type demo struct {
	out   io.Writer
	start time.Time
	n     int
	work  string
	stack *hub.Stack
	kr    *image.Keyring
	size  int // bytes of each image's payload
	// v1 is the factory payload, v2 2.0's, v3p the start of 3.0's (whose application fails),
	// v31 3.1's (2.0's with a few changes).
	v1, v2, v3p, v31 []byte
	devices          []*demoDevice
	bar              download     // device-001's download (with one device)
	served           atomic.Int64 // bytes the hub's file server sent
	mu               sync.Mutex   // serialises timeline lines; guards idle
	// idle is, per device, the workflow id of its last report of state 0 Idle (recorded
	// after its timeline line): a failed deployment is over for a device once it is Idle
	// again, not at its Failed report.
	idle map[string]string
	// mcu: each device has an MCU; mcuImages are its factory image (1.0.0), 2.0's (2.0.0)
	// and 2.1's (2.1.0, whose application does not come up).
	mcu       bool
	mcuImages [3][]byte
}

type demoDevice struct {
	id  string
	key string
	dev *devicesim.Device
}

// demoEnrollment is the DPS enrollment group of the demo's devices.
const demoEnrollment = "demo-devices"

const (
	demoMCUClass   = "mcu"
	demoProvider   = "Contoso"
	demoName       = "Toaster"
	demoModel      = "Toaster"
	demoRootKID    = "ADU.demo.R"
	demoSigningKID = "ADU.demo.S"
)

func (e *env) demo(c *cli.Context) error {
	n := c.Int("devices")
	if n < 1 || n > 500 {
		return exitcode.Usagef("--devices must be 1..500, not %d", n)
	}
	if c.NArg() > 0 {
		return exitcode.Usagef("demo takes no arguments")
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	work := c.String("work")
	if work == "" {
		dir, err := os.MkdirTemp("", "aduhub-demo-")
		if err != nil {
			return exitcode.WithCode(exitcode.IO, err)
		}
		defer os.RemoveAll(dir)
		work = dir
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		return exitcode.WithCode(exitcode.IO, err)
	}
	d := &demo{out: e.stdout, start: time.Now(), n: n, work: work, idle: map[string]string{}, mcu: c.Bool("mcu")}
	err := d.run(ctx)
	if d.stack != nil {
		d.stack.Close()
	}
	if err != nil {
		fmt.Fprintf(e.stdout, "\nDEMO FAILED: %v\n", err)
		var ec *exitcode.Error
		if errors.As(err, &ec) {
			return cliapp.Silent(err)
		}
		return cliapp.Silent(exitcode.InvalidInput(err))
	}
	fmt.Fprintf(e.stdout, "\ndemo passed in %.1f s: every step happened as described\n", time.Since(d.start).Seconds())
	return nil
}

// say prints a timeline line.
func (d *demo) say(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%6.2fs] %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

func (d *demo) run(ctx context.Context) error {
	images, err := d.prepare()
	if err != nil {
		return err
	}
	if err := d.importUpdates(ctx, images); err != nil {
		return err
	}
	remove := d.stack.Hub.OnReported(d.reportLine)
	defer remove()
	stop, err := d.powerOn(ctx)
	if err != nil {
		return err
	}
	defer stop()
	st2, err := d.deployGood(ctx)
	if err != nil {
		return err
	}
	st3, err := d.deployFailing(ctx)
	if err != nil {
		return err
	}
	deps := []*hub.DeploymentStatus{st2, st3}
	if d.mcu {
		st21, err := d.deployFailingMCU(ctx)
		if err != nil {
			return err
		}
		deps = append(deps, st21)
	}
	st31, err := d.deployAdaptive(ctx)
	if err != nil {
		return err
	}
	d.summary(append(deps, st31)...)
	return nil
}

// prepare makes the keys and the local stand-in (MQTT over TLS with a local CA, files over
// HTTP, both on 127.0.0.1, the bytes served counted), and signs the images of 2.0, 3.0 and
// 3.1; it returns their files.
func (d *demo) prepare() ([3]string, error) {
	d.say("generating keys: image signing key (ed25519), Device Update root and signing keys (RSA)")
	k, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		return [3]string{}, err
	}
	if d.kr, err = image.NewKeyring(k.Public()); err != nil {
		return [3]string{}, err
	}
	d.stack, err = hub.Local(hub.LocalOptions{DataDir: filepath.Join(d.work, "hub"), TLS: true, RootKID: demoRootKID, SigningKID: demoSigningKID,
		HTTPHandler: func(st *hub.Stack) http.Handler {
			files := st.Files()
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				files.ServeHTTP(httpcount.Writer{ResponseWriter: w, N: &d.served}, r)
			})
		}})
	if err != nil {
		return [3]string{}, exitcode.WithCode(exitcode.IO, err)
	}
	files, err := d.signImages(k)
	if err != nil || !d.mcu {
		return files, err
	}
	return files, d.signMCUImages(k)
}

// signImages signs the payloads of 2.0, of 3.0 (whose application will not come up) and of
// 3.1 (2.0's with a few changes, with its adaptive index and chunk store) as image files.
func (d *demo) signImages(k crypto.Signer) ([3]string, error) {
	var files [3]string
	d.size = 4 << 20
	if d.n > 10 {
		d.size = 1 << 20
	}
	d.v1, d.v2 = payload(1, d.size), payload(2, d.size)
	v3 := payload(3, d.size)
	d.v3p = v3[:4096]
	d.v31 = slices.Concat(d.v2[:d.size/4], noise(d.size/64), d.v2[d.size/4+d.size/64:])
	imgDir := filepath.Join(d.work, "images")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return files, err
	}
	for i, u := range []struct {
		version string
		raw     []byte
	}{{"2.0", d.v2}, {"3.0", v3}, {"3.1", d.v31}} {
		files[i] = filepath.Join(imgDir, "rootfs-"+u.version+".aduimg")
		h, err := signImage(files[i], u.raw, k, u.version)
		if err != nil {
			return files, err
		}
		d.say("signed rootfs-%s.aduimg: %s payload, %d chunks, zstd, key %s", u.version, progress.Size(h.RawSize), len(h.Chunks), h.KeyID)
	}
	x, err := writeIndex(files[2], d.v2, d.kr)
	if err != nil {
		return files, err
	}
	d.say("indexed rootfs-3.1.aduimg against 2.0: %d content-defined chunks, index %s, chunk store %s", len(x.Entries), progress.Size(int64(len(x.Encode()))), progress.Size(x.StoreSize))
	return files, nil
}

// noise is n incompressible bytes: what 3.1 changes.
func noise(n int) []byte {
	b := make([]byte, n)
	mrand.NewChaCha8([32]byte{31}).Read(b)
	return b
}

// writeIndex writes the adaptive index and chunk store of the image at path beside it
// (rootfs-3.1.aduidx and .aduchunks), with delta frames against the payload base, as
// aduimport index --base does.
func writeIndex(path string, base []byte, kr *image.Keyring) (*adaptive.Index, error) {
	img, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var store bytes.Buffer
	x, err := adaptive.IndexImage(bytes.NewReader(img), kr, adaptive.DefaultParams, &store, &adaptive.Base{R: bytes.NewReader(base), Size: int64(len(base))})
	if err != nil {
		return nil, err
	}
	stem := strings.TrimSuffix(path, ".aduimg")
	return x, errors.Join(os.WriteFile(stem+".aduidx", x.Encode(), 0o644), os.WriteFile(stem+".aduchunks", store.Bytes(), 0o644))
}

// importUpdates writes the import manifests of the images of 2.0 and 3.0 and imports them.
func (d *demo) importUpdates(ctx context.Context, images [3]string) error {
	d.say("local IoT Hub on mqtts://%s (local CA), update files on %s", d.stack.MQTTAddr, d.stack.HTTPURL)
	stem := strings.TrimSuffix(images[2], ".aduimg")
	updates := []struct {
		version string
		files   []string
		classes []string
	}{{"2.0", []string{images[0]}, []string{"rootfs"}}, {"3.0", []string{images[1]}, []string{"rootfs"}},
		// 3.1's image with its adaptive index and chunk store, its related files.
		{"3.1", []string{images[2], stem + ".aduidx", stem + ".aduchunks"}, []string{"rootfs"}}}
	if d.mcu {
		dir := filepath.Dir(images[0])
		updates[0].files = append(updates[0].files, filepath.Join(dir, "mcu-2.0.0.bin"))
		updates[0].classes = append(updates[0].classes, demoMCUClass)
		updates = append(updates, struct {
			version string
			files   []string
			classes []string
		}{"2.1", []string{filepath.Join(dir, "mcu-2.1.0.bin")}, []string{demoMCUClass}})
	}
	for _, u := range updates {
		im, err := importManifest(ctx, u.version, u.files, u.classes)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(filepath.Dir(images[0]), "toaster-"+u.version+".importmanifest.json"), im, 0o644); err != nil {
			return err
		}
		paths := map[string]string{}
		for _, f := range u.files {
			paths[filepath.Base(f)] = f
		}
		up, err := d.stack.Service.Import(im, paths)
		if err != nil {
			return fmt.Errorf("importing %s: %w", u.version, err)
		}
		d.say("imported %s/%s %s (%s): update manifest signed (%d bytes, signature by %s)", up.UpdateID.Provider, up.UpdateID.Name, up.UpdateID.Version,
			strings.Join(u.classes, " + "), len(up.Manifest), d.stack.Signer.SigningKID())
	}
	return nil
}

// powerOn makes the devices, powers them on and waits until each has connected and reported
// its properties; stop powers them off.
func (d *demo) powerOn(ctx context.Context) (stop func(), err error) {
	groupKey := newKey()
	if err := d.stack.Hub.AddEnrollment(hub.Enrollment{ID: demoEnrollment, Group: true, Key: groupKey}); err != nil {
		return nil, err
	}
	d.say("DPS enrollment group %s (id scope %s): each device registers with its key derived from the group key and is assigned to the hub", demoEnrollment, d.stack.Hub.IDScope())
	for i := 0; i < d.n; i++ {
		dd, err := d.newDevice(i, groupKey)
		if err != nil {
			return nil, err
		}
		d.devices = append(d.devices, dd)
	}
	dctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, dd := range d.devices {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dd.dev.Run(dctx)
		}()
	}
	stop = func() {
		cancel()
		wg.Wait()
		for _, dd := range d.devices {
			dd.dev.Close()
		}
	}
	d.say("%d simulated device(s) powered on: NAND banks A/B, U-Boot env (aduflash preset), bank A holds the factory image", d.n)
	if err := d.waitFor(ctx, "every device to connect and report its properties", func() (bool, string) {
		ok := 0
		for _, dd := range d.devices {
			if d.stack.Hub.Connected(dd.id) && reportedProps(d.stack.Hub, dd.id) {
				ok++
			}
		}
		return ok == d.n, fmt.Sprintf("%d/%d connected", ok, d.n)
	}); err != nil {
		stop()
		return nil, err
	}
	d.say("%d device(s) connected and reported manufacturer=%s model=%s", d.n, demoProvider, demoModel)
	return stop, nil
}

// deployGood deploys 2.0 and checks that every device runs it from bank B, nothing pending.
func (d *demo) deployGood(ctx context.Context) (*hub.DeploymentStatus, error) {
	st, err := d.deploy(ctx, "2.0", "", "bank B")
	if err != nil {
		return nil, err
	}
	if err := d.confirmed(st, "B", d.v2); err != nil {
		return nil, err
	}
	d.say("2.0 confirmed on every device: running bank B, nothing pending")
	if d.mcu {
		if err := d.checkMCUs("2.0", 2, 0); err != nil {
			return nil, err
		}
		d.say("MCU image 2.0.0 confirmed on every device's MCU (after the gateway confirmed bank B)")
	}
	return st, nil
}

// confirmed checks that every device succeeded st's update and runs raw from bank, primary,
// nothing pending or bad.
func (d *demo) confirmed(st *hub.DeploymentStatus, bank string, raw []byte) error {
	v := st.UpdateID.Version
	if st.Counts.Succeeded != d.n {
		return fmt.Errorf("%s: %d of %d devices succeeded", v, st.Counts.Succeeded, d.n)
	}
	for _, dd := range d.devices {
		if dd.dev.Running() != bank || !bytes.Equal(dd.dev.Slot(bank, len(raw)), raw) {
			return fmt.Errorf("%s: after %s it runs bank %s", dd.id, v, dd.dev.Running())
		}
		if bs, err := dd.dev.BootState(); err != nil || bs.Pending != "" || string(bs.Primary) != bank || bs.IsBad(bootloader.Bank(bank)) {
			return fmt.Errorf("%s: after %s the bootloader state is %+v (%v)", dd.id, v, bs, err)
		}
	}
	return nil
}

// deployFailed deploys version (see deploy) and checks that every device failed it with erc
// and is Idle again, reporting 2.0 as installed and running it from bank B.
func (d *demo) deployFailed(ctx context.Context, version, note, bank string, erc adu.ExtendedResultCode) (*hub.DeploymentStatus, error) {
	st, err := d.deploy(ctx, version, note, bank)
	if err != nil {
		return nil, err
	}
	if st.Counts.Failed != d.n {
		return nil, fmt.Errorf("%s: %d of %d devices failed, want all", version, st.Counts.Failed, d.n)
	}
	for _, r := range st.Results {
		if !strings.Contains(r.ExtendedResultCodes, erc.String()) {
			return nil, fmt.Errorf("%s: %s failed with %q, want %s", r.DeviceID, version, r.ExtendedResultCodes, erc)
		}
	}
	u2 := adu.UpdateID{Provider: demoProvider, Name: demoName, Version: "2.0"}
	err = d.waitFor(ctx, "every device to report 2.0 again", func() (bool, string) {
		ok := 0
		for _, dd := range d.devices {
			if d.idleAfter(dd.id) == st.ID && installed(d.stack.Hub, dd.id) == u2.InstalledUpdateID() && dd.dev.Running() == "B" {
				ok++
			}
		}
		return ok == d.n, fmt.Sprintf("%d/%d back on 2.0", ok, d.n)
	})
	return st, err
}

// checkMCUs checks that every device's MCU runs major.minor and never booted a bad image.
func (d *demo) checkMCUs(update string, major, minor uint8) error {
	for _, dd := range d.devices {
		m := dd.dev.MCU()
		img := m.Running()
		if img == nil || img.Header.Version.Major != major || img.Header.Version.Minor != minor || m.Stats().BadBoots != 0 {
			return fmt.Errorf("%s: after %s its MCU runs %v (%d boots without a good image)", dd.id, update, img, m.Stats().BadBoots)
		}
	}
	return nil
}

// deployFailingMCU deploys 2.1, an MCU image whose application does not come up, and checks
// that every device failed it with the MCU's health-check code, its MCU reverted by MCUboot
// to 2.0.0, and the gateway still on 2.0 in bank B (no reboot for an MCU update).
func (d *demo) deployFailingMCU(ctx context.Context) (*hub.DeploymentStatus, error) {
	boots := make([]int, len(d.devices))
	for i, dd := range d.devices {
		boots[i] = dd.dev.Boots()
	}
	st, err := d.deployFailed(ctx, "2.1", " (an MCU image whose application will not come up)", "", agent.ERCMCUHealth)
	if err != nil {
		return nil, err
	}
	if err := d.checkMCUs("2.1", 2, 0); err != nil {
		return nil, err
	}
	for i, dd := range d.devices {
		if dd.dev.Boots() != boots[i] || dd.dev.Running() != "B" {
			return nil, fmt.Errorf("%s: the gateway rebooted for an MCU update (now bank %s)", dd.id, dd.dev.Running())
		}
	}
	d.say("2.1 reverted on every device's MCU by MCUboot: it runs 2.0.0 again; the gateway stayed on 2.0 without a reboot")
	return st, nil
}

// signMCUImages signs the MCU's images (MCUboot format, the same key): its factory 1.0.0,
// 2.0's 2.0.0 and 2.1's 2.1.0, whose application does not come up.
func (d *demo) signMCUImages(k crypto.Signer) error {
	dir := filepath.Join(d.work, "images")
	for i, version := range []string{"1.0.0", "2.0.0", "2.1.0"} {
		v, err := mcuboot.ParseVersion(version)
		if err != nil {
			return err
		}
		img, err := mcuboot.Sign(payload(uint64(10+i), 24<<10), k, mcuboot.SignOptions{Version: v, HeaderSize: 0x200, PadHeader: true})
		if err != nil {
			return err
		}
		d.mcuImages[i] = img
		if err := os.WriteFile(filepath.Join(dir, "mcu-"+version+".bin"), img, 0o644); err != nil {
			return err
		}
	}
	d.say("signed the MCU's images mcu-1.0.0.bin (its factory image), mcu-2.0.0.bin and mcu-2.1.0.bin: MCUboot format, %s each", progress.Size(int64(len(d.mcuImages[1]))))
	return nil
}

// deployFailing deploys 3.0, whose application does not come up, and checks that every
// device failed it with the health check's code, is Idle again and reports 2.0 as installed,
// running bank B, with bank A marked bad.
func (d *demo) deployFailing(ctx context.Context) (*hub.DeploymentStatus, error) {
	st, err := d.deployFailed(ctx, "3.0", " (its application will not come up)", "bank A", agent.ERCHealth)
	if err != nil {
		return nil, err
	}
	for _, dd := range d.devices {
		if bs, err := dd.dev.BootState(); err != nil || bs.Primary != "B" || !bs.IsBad("A") {
			return nil, fmt.Errorf("%s: after 3.0 the bootloader state is %+v (%v)", dd.id, bs, err)
		}
	}
	d.say("3.0 rolled back on every device: bank A marked bad, running bank B, 2.0 reported as installed")
	return st, nil
}

// deploy deploys version to every device, shows device-001's download into bank, and waits
// until no device is in progress.
func (d *demo) deploy(ctx context.Context, version, note, bank string) (*hub.DeploymentStatus, error) {
	u := adu.UpdateID{Provider: demoProvider, Name: demoName, Version: version}
	dep, err := d.stack.Service.Deploy(u, map[string]string{"manufacturer": demoProvider, "model": demoModel})
	if err != nil {
		return nil, fmt.Errorf("deploying %s: %w", version, err)
	}
	d.say("deployment %s: %s to %d device(s)%s", short(dep.ID), u, len(dep.Devices), note)
	if d.n == 1 && bank != "" {
		d.bar.start(d.out, int64(d.size), "device-001: download → verify → write "+bank)
	}
	st, err := d.waitDeployment(ctx, dep.ID)
	if err != nil {
		return nil, err
	}
	d.bar.finish()
	d.say("deployment %s: %d succeeded, %d failed, %d in progress", short(dep.ID), st.Counts.Succeeded, st.Counts.Failed, st.Counts.InProgress)
	return st, nil
}

// download is the progress bar of device-001's download.
type download struct {
	mu  sync.Mutex
	bar *progress.Bar
	at  int64 // bytes shown
}

func (b *download) start(out io.Writer, size int64, label string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.bar, b.at = progress.New(out, size, label), 0
}

// written moves the bar on to n bytes written.
func (b *download) written(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil && n > b.at {
		b.bar.Add(n - b.at)
		b.at = n
	}
}

func (b *download) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		b.bar.Finish()
		b.bar = nil
	}
}

// event puts what happens on the board of device-001 into the timeline (with one device).
func (d *demo) event(e devicesim.Event) {
	if d.n != 1 {
		return
	}
	switch e.Kind {
	case "written":
		d.bar.written(e.Bytes)
	case "boot":
		d.bar.finish()
		rb := ""
		if e.Rollback {
			rb = " (U-Boot fell back)"
		}
		d.say("device-001: U-Boot starts bank %s%s", e.Bank, rb)
	case "reboot":
		if len(d.devices) > 0 {
			if st, err := d.devices[0].dev.BootState(); err == nil && st.Pending != "" {
				d.say("device-001: bank %s pending in U-Boot's environment (%d attempts, falls back to %s); rebooting", st.Pending, st.AttemptsLeft, st.Fallback)
				return
			}
		}
		d.say("device-001: the agent reboots the device")
	}
}

func (d *demo) newDevice(i int, groupKey string) (*demoDevice, error) {
	id := fmt.Sprintf("device-%03d", i+1)
	key, err := dps.DeriveKey(groupKey, id)
	if err != nil {
		return nil, err
	}
	slot := 8 << 20
	if d.n > 10 {
		slot = 2 << 20
	}
	v3p := d.v3p
	logger := slog.New(slog.DiscardHandler)
	if d.n == 1 {
		logger = slog.New(&timelineHandler{d: d, id: id})
	}
	var mcu *devicesim.MCUOptions
	if d.mcu {
		mcu = &devicesim.MCUOptions{Class: demoMCUClass, Sim: mcusim.Config{Primary: d.mcuImages[0], Keyring: d.kr, SlotSize: 64 << 10},
			Healthy: func(img *mcuboot.Image) bool { return img.Header.Version.Minor != 1 }}
	}
	dev, err := devicesim.New(devicesim.Options{
		MCU:          mcu,
		Logger:       logger,
		Board:        board.Options{Dir: filepath.Join(d.work, "devices", id), SlotSize: slot, EraseSize: 128 << 10, PageSize: 2048, Factory: d.v1},
		Manufacturer: demoProvider, Model: demoModel,
		Keyring: d.kr, Roots: []adu.RootKey{d.stack.Signer.RootKey()}, NoBuiltinRoots: true, ModelID: adu.ModelContractV3,
		Healthy: func(bank string, content []byte) bool { return !bytes.HasPrefix(content, v3p) },
		Events:  d.event,
		Connect: devicesim.ConnectWith(d.connector(id, key, logger)),
	})
	if err != nil {
		return nil, err
	}
	return &demoDevice{id: id, key: key, dev: dev}, nil
}

// connector connects device id through the hub's DPS (the group enrollment), over TLS
// trusting the local CA, keeping its assignment in the device's folder.
func (d *demo) connector(id, key string, log *slog.Logger) *agent.Connector {
	tc := d.stack.CA.ClientTLSConfig()
	return &agent.Connector{
		Hub:       iothub.Config{Address: d.stack.MQTTAddr, TLSConfig: tc, ModelID: adu.ModelContractV3, MaxReconnectInterval: time.Second},
		DPS:       &dps.Config{IDScope: d.stack.Hub.IDScope(), RegistrationID: id, SymmetricKey: key, Endpoint: d.stack.MQTTAddr, TLSConfig: tc},
		CachePath: filepath.Join(d.work, "devices", id, agent.DPSCacheFile), Logger: log,
	}
}

// waitFor polls cond until it holds, printing its progress every few seconds.
func (d *demo) waitFor(ctx context.Context, what string, cond func() (bool, string)) error {
	last := time.Now()
	for {
		ok, msg := cond()
		if ok {
			return nil
		}
		if time.Since(last) > 5*time.Second {
			d.say("waiting for %s: %s", what, msg)
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s (%s)", what, msg)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitDeployment waits until no device of the deployment is in progress.
func (d *demo) waitDeployment(ctx context.Context, id string) (*hub.DeploymentStatus, error) {
	var st *hub.DeploymentStatus
	err := d.waitFor(ctx, "deployment "+short(id), func() (bool, string) {
		var err error
		if st, err = d.stack.Service.Status(id); err != nil {
			return false, err.Error()
		}
		return st.Counts.InProgress == 0 && st.Counts.Succeeded+st.Counts.Failed+st.Counts.Cancelled == len(st.Devices),
			fmt.Sprintf("%d succeeded, %d failed, %d in progress", st.Counts.Succeeded, st.Counts.Failed, st.Counts.InProgress)
	})
	return st, err
}

// summary prints the per-deployment table as the portal would show it.
func (d *demo) summary(deps ...*hub.DeploymentStatus) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintln(d.out)
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tUPDATE\tDEVICES\tSUCCEEDED\tFAILED\tRESULT CODES\tINSTALLED AFTERWARDS")
	for _, st := range deps {
		codes := map[string]int{}
		inst := map[string]int{}
		for _, r := range st.Results {
			c := fmt.Sprint(r.ResultCode)
			if r.ExtendedResultCodes != "" && r.ExtendedResultCodes != "00000000" {
				c += "/" + r.ExtendedResultCodes
			}
			codes[c]++
			inst[versionOf(r.InstalledUpdateID)]++
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", short(st.ID), st.UpdateID.Version, len(st.Devices), st.Counts.Succeeded, st.Counts.Failed, counted(codes), counted(inst))
	}
	tw.Flush()
	if d.n > 1 {
		return
	}
	fmt.Fprintln(d.out)
	tw = tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tRUNNING\tBOOTLOADER\tBOOTS\tINSTALLED")
	for _, dd := range d.devices {
		st, _ := dd.dev.BootState()
		fmt.Fprintf(tw, "%s\t%s\tprimary %s, bad %v\t%d\t%s\n", dd.id, dd.dev.Running(), st.Primary, st.Bad, dd.dev.Boots(), versionOf(installed(d.stack.Hub, dd.id)))
	}
	tw.Flush()
}

func counted(m map[string]int) string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func versionOf(installedUpdateID string) string {
	if installedUpdateID == "" {
		return "-"
	}
	u, err := adu.ParseInstalledUpdateID(installedUpdateID)
	if err != nil {
		return installedUpdateID
	}
	return u.Version
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func payload(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

// signImage signs raw as an aduimg image file.
func signImage(path string, raw []byte, k crypto.Signer, version string) (*image.Header, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, _, err := image.Sign(f, bytes.NewReader(raw), int64(len(raw)), k, image.SignOptions{Version: version, SlotClass: "rootfs",
		Compatibility: map[string]string{"model": demoModel}, ChunkSize: 256 << 10, Compression: image.CompressZstd})
	if err != nil {
		return nil, err
	}
	return h, f.Sync()
}

// deployAdaptive deploys 3.1 (2.0's payload with a few changes, with its adaptive index) and
// checks that every device runs it from bank A, nothing pending, having fetched less than a
// quarter of the image.
func (d *demo) deployAdaptive(ctx context.Context) (*hub.DeploymentStatus, error) {
	before := d.served.Load()
	st, err := d.deploy(ctx, "3.1", " (adaptive: only the chunks bank B lacks are fetched)", "bank A")
	if err != nil {
		return nil, err
	}
	if err := d.confirmed(st, "A", d.v31); err != nil {
		return nil, err
	}
	up, err := d.stack.Service.Update(st.UpdateID)
	if err != nil {
		return nil, err
	}
	served, size := (d.served.Load()-before)/int64(d.n), up.Files[0].SizeInBytes
	if served*4 > size {
		return nil, fmt.Errorf("3.1: each device fetched %d bytes of a %d-byte image, not only its changed chunks", served, size)
	}
	d.say("3.1 confirmed on every device: running bank A, nothing pending; each fetched %s of the %s image", progress.Size(served), progress.Size(size))
	return st, nil
}

// importManifest writes the import manifest of an update whose step i writes files[i] into
// slot class classes[i], as aduimport manifest create does.
func importManifest(ctx context.Context, version string, files, classes []string) ([]byte, error) {
	compat, err := manifestgen.ParseCompat("manufacturer=" + demoProvider + ",model=" + demoModel)
	if err != nil {
		return nil, err
	}
	var steps []manifestgen.StepSpec
	var fss []manifestgen.FileSpec
	for i, file := range files[:len(classes)] {
		criteria := version // installedCriteria: the image's version
		if classes[i] == demoMCUClass {
			v, err := mcuboot.ParseVersion(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(file), "mcu-"), ".bin"))
			if err != nil {
				return nil, err
			}
			criteria = v.String()
		}
		step, err := manifestgen.ParseStep(`handler=aduflash/image:1,files=` + filepath.Base(file) +
			`,properties={"installedCriteria":"` + criteria + `","slotClass":"` + classes[i] + `"}`)
		if err != nil {
			return nil, err
		}
		fs, err := manifestgen.ParseFile(file)
		if err != nil {
			return nil, err
		}
		steps, fss = append(steps, step), append(fss, fs)
	}
	for _, file := range files[len(classes):] {
		fss[0].Related = append(fss[0].Related, manifestgen.RelatedFileSpec{Path: file})
	}
	if err := imagestep.NameAdaptive(&manifestgen.Spec{Files: fss}); err != nil {
		return nil, err
	}
	m, _, err := manifestgen.Build(ctx, manifestgen.Spec{UpdateID: manifestgen.UpdateID{Provider: demoProvider, Name: demoName, Version: version},
		Compatibility: []manifestgen.Compatibility{compat}, Steps: steps, Files: fss})
	if err != nil {
		return nil, err
	}
	return manifestgen.Marshal(m)
}

// reportedProps tells whether the device reported its deviceProperties.
func reportedProps(h *hub.Hub, id string) bool {
	tw, err := h.Twin(id)
	return err == nil && bytes.Contains(tw, []byte(`"deviceProperties"`))
}

// idleAfter is the workflow id of the device's last Idle report.
func (d *demo) idleAfter(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idle[id]
}

// installed returns the device's reported installedUpdateId.
func installed(h *hub.Hub, id string) string {
	tw, err := h.Twin(id)
	if err != nil {
		return ""
	}
	var doc struct {
		Reported struct {
			DU struct {
				Agent struct {
					Installed string `json:"installedUpdateId"`
				} `json:"agent"`
			} `json:"deviceUpdate"`
		} `json:"reported"`
	}
	if json.Unmarshal(tw, &doc) != nil {
		return ""
	}
	return doc.Reported.DU.Agent.Installed
}

// reportLine puts what a device reports into the timeline, as the service sees it.
func (d *demo) reportLine(id string, patch json.RawMessage) {
	var doc struct {
		DU struct {
			Agent *struct {
				State     *int `json:"state"`
				Workflow  *adu.Workflow
				Installed string `json:"installedUpdateId"`
				Result    *struct {
					Code  int    `json:"resultCode"`
					Codes string `json:"extendedResultCodes"`
				} `json:"lastInstallResult"`
				Props map[string]string `json:"deviceProperties"`
			} `json:"agent"`
		} `json:"deviceUpdate"`
	}
	if json.Unmarshal(patch, &doc) != nil || doc.DU.Agent == nil {
		return
	}
	ag := doc.DU.Agent
	if ag.State != nil && *ag.State == int(adu.StateIdle) && ag.Workflow != nil {
		defer func() {
			d.mu.Lock()
			d.idle[id] = ag.Workflow.ID
			d.mu.Unlock()
		}()
	}
	if d.n != 1 {
		return
	}
	switch {
	case ag.Props != nil:
		d.say("%s → hub: deviceProperties (manufacturer %s, model %s, %s)", id, ag.Props["manufacturer"], ag.Props["model"], ag.Props["aduVer"])
	case ag.State == nil:
	case *ag.State == int(adu.StateDeploymentInProgress):
		d.say("%s → hub: state 6 DeploymentInProgress", id)
	case *ag.State == int(adu.StateFailed):
		code := ""
		if ag.Result != nil {
			code = fmt.Sprintf(", resultCode %d, extendedResultCodes %s", ag.Result.Code, ag.Result.Codes)
		}
		d.say("%s → hub: state 255 Failed%s", id, code)
	case *ag.State == int(adu.StateIdle):
		line := fmt.Sprintf("%s → hub: state 0 Idle", id)
		if ag.Installed != "" {
			line += ", installedUpdateId " + versionOf(ag.Installed)
		}
		if ag.Result != nil {
			line += fmt.Sprintf(", resultCode %d", ag.Result.Code)
		}
		d.say("%s", line)
	}
}

// timelineHandler shows the agent's decisions of one device in the timeline.
type timelineHandler struct {
	d  *demo
	id string
}

func (h *timelineHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *timelineHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *timelineHandler) WithGroup(string) slog.Handler            { return h }

func (h *timelineHandler) Handle(_ context.Context, r slog.Record) error {
	switch r.Message {
	case "adaptive download":
		var fetched, reused, size int64
		var from string
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "fetched":
				fetched = a.Value.Int64()
			case "reused":
				reused = a.Value.Int64()
			case "size":
				size = a.Value.Int64()
			case "from":
				from = a.Value.String()
			}
			return true
		})
		h.d.say("%s agent: adaptive download: fetched %s of the %s image, reused %s from %s", h.id, progress.Size(fetched), progress.Size(size), progress.Size(reused), from)
	case "health checks passed; bank confirmed", "rolling back", "slot written and verified", "deployment failed",
		"updating an MCU", "MCU updated and confirmed", "the MCU failed its health check: reverting", "MCU update failed":
		var attrs []string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "bank" || a.Key == "slot" || a.Key == "reason" || a.Key == "err" || a.Key == "mcu" || a.Key == "why" {
				attrs = append(attrs, a.Key+"="+a.Value.String())
			}
			return true
		})
		h.d.say("%s agent: %s %s", h.id, r.Message, strings.Join(attrs, " "))
	}
	return nil
}
