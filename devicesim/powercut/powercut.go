// Package powercut cuts the power of a simulated device (package devicesim) at the
// operations of a whole update and checks what the device does afterwards. It is the
// harness behind TestPowerCutSweep: a sample of cut points in every test run, every cut
// point with `make sweep`.
//
// A case is a board (its storage: NAND with factory bad blocks and a block that goes bad
// during the update, SPI NOR, or a block device; each bank with a kernel and a rootfs
// slot), a scenario (an update of the rootfs alone that succeeds; the same update failing
// its health check in the new bank, so that the device rolls back; an update with an inline
// rootfs step and a reference step whose child update writes the kernel; an adaptive update
// of the rootfs, fetched as the chunks bank A lacks), the operation the
// power fails at, counted from the first power-on, and how that operation tears (Case). The
// operations are those the same run does without a cut (Fixture.Plan): every flash page
// program, erase, bad-block mark and sync, sector write, journal file operation and
// environment write, U-Boot's bootcount saves included, of the download, the slot writes,
// the marking of the new bank as pending, the reboots, the health check, the confirmation
// or the rollback — and of whatever else the update comes to do (the copy of the slots it
// does not write into the spare bank, once the agent makes it), with no list to keep.
//
// After the cut the board is switched on again, as often as it takes (within a bound), and
// Run checks (Result.Problems):
//   - every boot started a bank holding what it must: bank A its factory content, bank B
//     what the uncut run left in it — never a half-written slot;
//   - the bootloader holds the image's anti-rollback floor exactly while it holds bank B
//     confirmed;
//   - no start downloaded more than the journal had left to verify before it; an adaptive
//     one fetched the index once, the image's header only, and from the chunk store only
//     the chunks bank A lacks past what the journal had verified (no verified chunk again);
//   - in the end the update is installed, confirmed and reported, or (rollback) bank A runs
//     confirmed, bank B is marked bad and the failure is recorded and reported; nothing is
//     pending, and the power went exactly once, at the operation the plan has there.
package powercut

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"net/http/httptest"
	"os"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	simboard "github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/adaptive"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/testpayload"
)

// Scenario is what the update does on the device.
type Scenario string

// The scenarios.
const (
	// Success: an update of the rootfs alone; the new bank passes its health check.
	Success Scenario = "success"
	// Rollback: the same update; the new bank fails its health check and the device
	// returns to the old one.
	Rollback Scenario = "rollback"
	// Reference: an inline rootfs step and a reference step to a child update that writes
	// the kernel; it succeeds.
	Reference Scenario = "reference"
	// Adaptive: an update of the rootfs, mostly bank A's, with an adaptive index and chunk
	// store: the device fetches only the chunks it lacks, and never one it verified before.
	Adaptive Scenario = "adaptive"
	// MCU: an inline rootfs step and a step for the MCU attached to the board (MCUboot
	// behind SMP on UDP), which the agent updates once the new bank is confirmed; every
	// SMP request the gateway sends is an operation, and a cut point. It succeeds.
	MCU Scenario = "mcu"
)

// Storages, Scenarios and Tears are everything a sweep covers.
var (
	Storages  = []simboard.Storage{simboard.NAND, simboard.NOR, simboard.Block}
	Scenarios = []Scenario{Success, Rollback, Reference, Adaptive, MCU}
	Tears     = []simboard.Tear{simboard.TearNone, simboard.TearPartial}
)

// Case is one cut point.
type Case struct {
	Storage  simboard.Storage
	Scenario Scenario
	Tear     simboard.Tear
	Cut      int // the operation the power fails at, counted from 0 at the first power-on
}

func (c Case) String() string {
	return fmt.Sprintf("%s/%s/%s cut at operation %d", c.Storage, c.Scenario, c.Tear, c.Cut)
}

// seed is the case's seed for what the simulators tear and lose.
func (c Case) seed() uint64 {
	h := fnv.New64a()
	fmt.Fprint(h, c.String())
	return h.Sum64() | 1
}

// The deployment every case runs.
const (
	workflowID      = "wf-sweep"
	securityCounter = 5
	manufacturer    = "Contoso"
	model           = "Toaster"
)

// Fixture is what the cases share: the keys, the signed updates, and the file server.
type Fixture struct {
	signer  *hub.Signer
	keyring *image.Keyring
	bankA   map[string][]byte // bank A's content at first power-on, per slot class
	// mcuA is the MCU's image at first power-on (1.0.0); the MCU scenario installs 2.0.0.
	mcuA    []byte
	updates map[Scenario]*update
	files   *files
	srv     *httptest.Server
}

// update is a signed update: its manifest, its files (those of its child updates included)
// and what it writes into each slot class.
type update struct {
	id     adu.UpdateID
	m, sig string
	files  map[string][]byte // by file id; ids are unique across the fixture's updates
	writes map[string][]byte // by slot class: the raw payload
	// adaptive is the adaptive index of the Adaptive scenario's image (nil in the others).
	adaptive *adaptiveFiles
}

// Sizes of the payloads. With the board geometry of newBoard they make a whole update do
// about 800 (NAND, block device) to 1500 (NOR) operations.
const (
	factorySize = 96 << 10
	kernelSize  = 24 << 10
	updateSize  = 320 << 10
	kernel2Size = 40 << 10
	chunkSize   = 32 << 10
)

// NewFixture signs the updates and starts the file server. Close stops it.
func NewFixture() (*Fixture, error) {
	signer, err := hub.NewSigner(rand.Reader, "ADU.sweep.R", "ADU.sweep.S", 2048)
	if err != nil {
		return nil, err
	}
	key, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		return nil, err
	}
	kr, err := image.NewKeyring(key.Public())
	if err != nil {
		return nil, err
	}
	f := &Fixture{signer: signer, keyring: kr, bankA: map[string][]byte{"rootfs": payload(1, factorySize), "kernel": payload(7, kernelSize)}}
	rootfs, kernel := payload(2, updateSize), payload(8, kernel2Size)
	images := map[string][]byte{}
	for class, raw := range map[string][]byte{"rootfs": rootfs, "kernel": kernel} {
		if images[class], err = signImage(key, raw, class, "2.0"); err != nil {
			return nil, err
		}
	}
	single, err := f.sign("Toaster", map[string][]byte{"froot": images["rootfs"]}, step{file: "froot", class: "rootfs"})
	if err != nil {
		return nil, err
	}
	single.writes = map[string][]byte{"rootfs": rootfs}
	child := manifestJSON("Toaster-Kernel", map[string][]byte{"fkern": images["kernel"]}, step{file: "fkern", class: "kernel"})
	childFile, _ := json.Marshal(map[string]string{"updateManifest": child})
	ref, err := f.sign("Toaster", map[string][]byte{"froot": images["rootfs"], "fchild": childFile}, step{file: "froot", class: "rootfs"}, step{ref: "fchild"})
	if err != nil {
		return nil, err
	}
	ref.files["fkern"] = images["kernel"]
	ref.writes = map[string][]byte{"rootfs": rootfs, "kernel": kernel}
	ad, err := f.adaptiveUpdate(key)
	if err != nil {
		return nil, err
	}
	mcu, err := f.signMCU(key, images["rootfs"])
	if err != nil {
		return nil, err
	}
	mcu.writes = single.writes
	f.updates = map[Scenario]*update{Success: single, Rollback: single, Reference: ref, Adaptive: ad, MCU: mcu}
	all := map[string][]byte{"fmcu": mcu.files["fmcu"]}
	maps.Copy(all, ref.files)
	maps.Copy(all, ad.files)
	f.files = newFiles(all)
	f.srv = httptest.NewServer(f.files)
	return f, nil
}

// The MCU scenario's MCU: its class, slot size and images' size.
const (
	mcuClass    = "mcu"
	mcuSlotSize = 64 << 10
	mcuImage    = 24 << 10
)

// signMCU signs the MCU's images (1.0.0 at first power-on, 2.0.0 in the update) and the
// update of the MCU scenario: rootfs and MCU.
func (f *Fixture) signMCU(key crypto.Signer, rootfs []byte) (*update, error) {
	var imgs [2][]byte
	for i := range imgs {
		img, err := mcuboot.Sign(payload(uint64(20+i), mcuImage), key, mcuboot.SignOptions{Version: mcuboot.Version{Major: uint8(i + 1)}, HeaderSize: 0x200, PadHeader: true})
		if err != nil {
			return nil, err
		}
		imgs[i] = img
	}
	f.mcuA = imgs[0]
	u, err := f.sign("Toaster", map[string][]byte{"froot": rootfs, "fmcu": imgs[1]}, step{file: "froot", class: "rootfs"}, step{file: "fmcu", class: mcuClass})
	if err != nil {
		return nil, err
	}
	return u, nil
}

// Close stops the file server.
func (f *Fixture) Close() { f.srv.Close() }

func payload(seed uint64, n int) []byte { return testpayload.Bytes(seed, int64(n)) }

func signImage(key crypto.Signer, raw []byte, class, version string) ([]byte, error) {
	out, err := os.CreateTemp("", "powercut-*.aduimg")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	_, n, err := image.Sign(out, bytes.NewReader(raw), int64(len(raw)), key, image.SignOptions{Version: version, SlotClass: class,
		ChunkSize: chunkSize, Compression: image.CompressZstd, SecurityCounter: securityCounter,
		Compatibility: map[string]string{"manufacturer": manufacturer, "model": model}})
	if err != nil {
		return nil, err
	}
	file := make([]byte, n)
	_, err = out.ReadAt(file, 0)
	return file, err
}

// step is a step of an update manifest: an inline step writing file into class (with an
// adaptive index and chunk store when index and store name them), or a reference step to
// the child manifest file ref.
type step struct{ file, class, ref, index, store string }

// manifestJSON renders the update manifest Contoso/name 2.0 with these files and steps.
func manifestJSON(name string, files map[string][]byte, steps ...step) string {
	var ss []any
	for _, s := range steps {
		if s.ref != "" {
			ss = append(ss, map[string]any{"type": "reference", "detachedManifestFileId": s.ref})
			continue
		}
		ss = append(ss, map[string]any{"handler": "aduflash/image:1", "files": []string{s.file},
			"handlerProperties": map[string]string{"installedCriteria": "2.0", "slotClass": s.class}})
	}
	fs := map[string]any{}
	for id, data := range files {
		fs[id] = fileJSON(id, data)
	}
	for _, s := range steps {
		if s.index != "" {
			fs[s.file].(map[string]any)["downloadHandler"] = map[string]string{"id": agent.DownloadHandlerAdaptive}
			fs[s.file].(map[string]any)["relatedFiles"] = map[string]any{
				s.index: related(fs, s.index, adaptive.RoleIndex), s.store: related(fs, s.store, adaptive.RoleStore)}
		}
	}
	m, _ := json.Marshal(map[string]any{"manifestVersion": "5.0", "createdDateTime": "2026-11-22T10:00:00Z",
		"updateId":      adu.UpdateID{Provider: manufacturer, Name: name, Version: "2.0"},
		"compatibility": []map[string]string{{"manufacturer": manufacturer, "model": model}},
		"instructions":  map[string]any{"steps": ss}, "files": fs})
	return string(m)
}

// fileJSON is the update manifest's entry of a file.
func fileJSON(id string, data []byte) map[string]any {
	sum := sha256.Sum256(data)
	return map[string]any{"fileName": id + ".bin", "sizeInBytes": len(data), "hashes": map[string]string{"sha256": base64.StdEncoding.EncodeToString(sum[:])}}
}

// related moves file id of fs into a related file with the adaptive role.
func related(fs map[string]any, id, role string) map[string]any {
	r := fs[id].(map[string]any)
	delete(fs, id)
	r["properties"] = map[string]string{adaptive.RoleProperty: role}
	return r
}

// sign makes the update Contoso/name 2.0 of these files and steps, signed.
func (f *Fixture) sign(name string, files map[string][]byte, steps ...step) (*update, error) {
	m := manifestJSON(name, files, steps...)
	sig, err := f.signer.Sign([]byte(m))
	if err != nil {
		return nil, err
	}
	return &update{id: adu.UpdateID{Provider: manufacturer, Name: name, Version: "2.0"}, m: m, sig: sig, files: files}, nil
}

// service is the desired deviceUpdate.service that deploys u to a board.
func (f *Fixture) service(u *update, board string) json.RawMessage {
	urls := map[string]string{}
	for id := range u.files {
		urls[id] = f.srv.URL + "/" + board + "/" + id
	}
	b, _ := json.Marshal(map[string]any{"workflow": map[string]any{"action": 3, "id": workflowID},
		"updateManifest": u.m, "updateManifestSignature": u.sig, "fileUrls": urls})
	return b
}

// size is the bytes of all files of u: what a start may download with nothing verified.
func (u *update) size() int64 {
	var n int64
	for _, data := range u.files {
		n += int64(len(data))
	}
	return n
}

// Plan is what a board and scenario do without a cut.
type Plan struct {
	Storage  simboard.Storage
	Scenario Scenario
	// Ops are the operations of the whole run, in order: the cut points.
	Ops []simboard.Op
	// BankB is what each slot of bank B holds at the end (as many bytes as bank A's or the
	// update's content of the class, whichever is longer): what bank B may be booted with.
	BankB map[string][]byte
}

// Plan runs the update on a board without a cut, checks it, and returns its operations.
func (f *Fixture) Plan(ctx context.Context, st simboard.Storage, sc Scenario) (*Plan, error) {
	b, err := f.newBoard(Case{Storage: st, Scenario: sc, Cut: -1}, nil)
	if err != nil {
		return nil, err
	}
	b.dev.Power().Record()
	if res := b.run(ctx); len(res.Problems) > 0 {
		return nil, fmt.Errorf("%s/%s without a power cut: %v\n%s", st, sc, res.Problems, res.Log)
	}
	p := &Plan{Storage: st, Scenario: sc, Ops: b.dev.Power().Recorded(), BankB: map[string][]byte{}}
	u := f.updates[sc]
	for class, old := range f.bankA {
		p.BankB[class] = b.dev.Content("B", class, max(len(old), len(u.writes[class])))
		if want := u.writes[class]; want != nil && !bytes.HasPrefix(p.BankB[class], want) {
			return nil, fmt.Errorf("%s/%s without a power cut: bank B's %s slot does not hold the update", st, sc, class)
		}
	}
	return p, nil
}

// Points returns the cut points of tear mode t: every operation for TearNone, the
// operations that can be partly applied (page programs, erases, sector and file writes) for
// TearPartial.
func (p *Plan) Points(t simboard.Tear) []int {
	var out []int
	for i, op := range p.Ops {
		if t == simboard.TearNone || op.Kind.Tears() {
			out = append(out, i)
		}
	}
	return out
}

// Whole tells whether the plan leaves bank B with every slot class of bank A, those the
// update does not write copied from it.
func (p *Plan) Whole(f *Fixture) bool {
	for class, old := range f.bankA {
		if _, written := f.updates[p.Scenario].writes[class]; !written && !bytes.HasPrefix(p.BankB[class], old) {
			return false
		}
	}
	return true
}

// Run runs one cut point against what plan says of its board and scenario.
func (f *Fixture) Run(ctx context.Context, plan *Plan, c Case) Result {
	b, err := f.newBoard(c, plan)
	if err != nil {
		return Result{Case: c, Problems: []string{err.Error()}}
	}
	b.dev.Power().CutAt(c.Cut, c.Tear)
	return b.run(ctx)
}

// Result is what happened in one case.
type Result struct {
	Case
	Boots    int
	InUBoot  bool     // the cut fell on U-Boot's environment save (bootcount)
	Problems []string // empty: a good outcome
	Log      string   // the agent's log, kept for a bad outcome
}
