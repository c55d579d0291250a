package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/devicesim/board"
	"github.com/aduflash/aduflash/devicesim/mcusim"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/mcutest"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/smp"
)

// fastSMP keeps SMP waits short: the simulated MCUs answer at once.
var fastSMP = smp.Options{Timeout: 100 * time.Millisecond, EraseTimeout: 300 * time.Millisecond, Retries: 2, MaxPacket: 512}

// testMCU is an MCU attached to the test board: a simulated MCU with MCUboot, reached over an
// in-memory serial line, and whether it is plugged in.
type testMCU struct {
	sim       *mcusim.MCU
	unplugged atomic.Bool
}

// mcuBoard is the test board with MCUs attached (classes motor, radio, ...: their names too),
// their images signed by signer, and a health command (motor-check, ...) that passes while
// healthy says so of the image the MCU runs.
type mcuBoard struct {
	*device
	signer  *mcutest.Signer
	mcus    map[string]*testMCU
	healthy func(class string, running *mcuboot.Image) bool
	srv     *server
	h       *testHub
	// clients are the SMP clients the agents opened.
	mu      sync.Mutex
	clients []*smp.Client
}

// newMCUBoard makes the board with MCUs of classes; each runs version 1.0.0 confirmed, and
// a fault hook (nil: none) may be set on it.
func newMCUBoard(t *testing.T, faults map[string]func(int, smp.Header) mcusim.Fault, classes ...string) *mcuBoard {
	t.Helper()
	b := &mcuBoard{signer: mcutest.NewSigner(t), mcus: map[string]*testMCU{}, srv: newServer(t), h: newHub(t),
		healthy: func(string, *mcuboot.Image) bool { return true }}
	var cfgs []slots.MCUConfig
	for _, class := range classes {
		m, err := mcusim.New(mcusim.Config{Primary: b.signer.Image(t, "1.0.0", 12000), Keyring: b.signer.Keyring, Fault: faults[class]})
		if err != nil {
			t.Fatal(err)
		}
		b.mcus[class] = &testMCU{sim: m}
		cfgs = append(cfgs, slots.MCUConfig{Name: class, Class: class, Address: "127.0.0.1:1", SlotSize: mcusim.DefaultSlotSize,
			BootTimeout: 2 * time.Second, HealthCommand: []string{class + "-check"}})
	}
	b.device = newBoardDevice(t, board.Options{Factory: payload(1, 64<<10), MCUs: cfgs})
	return b
}

// agent starts the gateway's agent with the board's MCUs reachable (those plugged in).
func (b *mcuBoard) agent() *Agent {
	return b.device.agent(func(o *Options) {
		o.MCUKeyrings = map[string]*image.Keyring{}
		for class := range b.mcus {
			o.MCUKeyrings[class] = b.signer.Keyring
		}
		o.OpenMCU = b.open
		bank := o.HealthOptions.Exec
		o.HealthOptions.Exec = func(ctx context.Context, at health.Attempt) (int, error) {
			class, _ := strings.CutSuffix(at.Argv[0], "-check")
			tm, ok := b.mcus[class]
			if !ok {
				return bank(ctx, at)
			}
			if b.healthy(class, tm.sim.Running()) {
				return 0, nil
			}
			fmt.Fprintln(at.Output, class, "does not come up")
			return 1, nil
		}
	})
}

// open connects to an MCU; an unplugged one never answers.
func (b *mcuBoard) open(_ context.Context, m *slots.MCUConfig) (*smp.Client, error) {
	tm := b.mcus[m.Class]
	if !tm.unplugged.Load() {
		c := mcutest.Connect(b.t, tm.sim, smp.SerialOptions{LineSize: 128}, fastSMP)
		b.mu.Lock()
		b.clients = append(b.clients, c)
		b.mu.Unlock()
		return c, nil
	}
	line, dead := net.Pipe()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := dead.Read(buf); err != nil {
				return
			}
		}
	}()
	b.t.Cleanup(func() { dead.Close() })
	return smp.NewClient(smp.NewSerial(line, smp.SerialOptions{}), fastSMP), nil
}

// mcuImage is an MCU's image of version, a step of an update.
func (b *mcuBoard) mcuImage(class, version string, size int) (mstep, mfile) {
	img := b.signer.Image(b.t, version, size)
	id := "f-" + class
	return mstep{file: id, class: class, criteria: class + "-" + version}, mfile{id: id, name: class + "-" + version + ".bin", data: img}
}

// rootfsImage is the gateway's rootfs image of version, a step of an update.
func (b *mcuBoard) rootfsImage(version string) (mstep, mfile) {
	img := makeImage(b.t, payload(7, 100<<10), version, nil)
	return mstep{file: "f-rootfs", class: "rootfs", criteria: version}, mfile{id: "f-rootfs", name: "rootfs-" + version + ".aduimg", data: img}
}

// publish serves the files and signs the update Contoso/Board version with steps.
func (b *mcuBoard) publish(version string, steps []mstep, files []mfile) *refUpdate {
	b.t.Helper()
	u := &refUpdate{id: adu.UpdateID{Provider: "Contoso", Name: "Board", Version: version}, urls: map[string]string{}}
	for _, f := range files {
		u.urls[f.id] = b.srv.put(version+"/"+f.name, f.data)
	}
	u.manifest = manifestJSON("Board", version, steps, files)
	var err error
	if u.sig, err = getKeys(b.t).signer.Sign([]byte(u.manifest)); err != nil {
		b.t.Fatal(err)
	}
	return u
}

// deploy delivers the deployment on a new boot and runs the agent until it reports the
// deployment's end (Idle after it) or reboots; it returns Run's error.
func (b *mcuBoard) deploy(u *refUpdate, id, retry string) error {
	b.t.Helper()
	before := len(b.h.agentReports())
	b.h.full(u.service(id, retry))
	return runAgent(b.t, b.agent(), b.h, func() bool {
		rs := b.h.agentReports()
		if len(rs) <= before {
			return false // only what this boot reports counts
		}
		ag := rs[len(rs)-1]
		lir, _ := ag["lastInstallResult"].(map[string]any)
		return lir != nil && stateOf(ag) == 0 && wfID(ag) == id && resultCodeOf(lir) != float64(adu.ResultSuccess)
	})
}

// running returns the MCU's image list entry of what it runs.
func (b *mcuBoard) running(class string) smp.SlotState {
	b.t.Helper()
	c := mcutest.Connect(b.t, b.mcus[class].sim, smp.SerialOptions{}, fastSMP)
	list, err := c.ImageState(context.Background())
	if err != nil {
		b.t.Fatal(err)
	}
	if a := active(list); a != nil {
		return *a
	}
	b.t.Fatalf("%s runs nothing: %+v", class, list)
	return smp.SlotState{}
}

// checkRuns fails unless the MCU runs version, confirmed, and never booted a bad image.
func (b *mcuBoard) checkRuns(class, version string) {
	b.t.Helper()
	if r := b.running(class); r.Version != version || !r.Confirmed {
		b.t.Errorf("%s runs %s (confirmed %v), want %s confirmed", class, r.Version, r.Confirmed, version)
	}
	if bad := b.mcus[class].sim.Stats().BadBoots; bad != 0 {
		b.t.Errorf("%s booted %d times without a good image", class, bad)
	}
}

// lastResult is the last reported lastInstallResult and its step results' codes (the
// model of the test devices reports one integer extendedResultCode).
func (b *mcuBoard) lastResult() (rc float64, erc adu.ExtendedResultCode, steps []float64, stepERC []adu.ExtendedResultCode) {
	ag := lastState(b.h)
	lir, _ := ag["lastInstallResult"].(map[string]any)
	code := func(m map[string]any) adu.ExtendedResultCode {
		f, _ := m["extendedResultCode"].(float64)
		return adu.ExtendedResultCode(uint32(int32(f)))
	}
	rc, erc = resultCodeOf(lir), code(lir)
	sr := stepResults(ag)
	for i := range len(sr) {
		s, _ := sr[fmt.Sprintf("step_%d", i)].(map[string]any)
		steps = append(steps, resultCodeOf(s))
		stepERC = append(stepERC, code(s))
	}
	return
}

// One deployment updates the gateway's bank and its MCU: the MCU is left alone until the
// gateway runs the new bank confirmed, then updated (upload, test, reset, health check,
// confirm); one step result per step. The same update again is installed already.
func TestMCUAfterGateway(t *testing.T) {
	b := newMCUBoard(t, nil, "motor")
	rs, rf := b.rootfsImage("2.0")
	ms, mf := b.mcuImage("motor", "2.0.0", 16000)
	u := b.publish("2.0", []mstep{rs, ms}, []mfile{rf, mf})
	if err := b.deploy(u, "wf", ""); !errors.Is(err, ErrRebooting) {
		t.Fatalf("install: %v\n%v", err, b.h.all())
	}
	if st := b.mcus["motor"].sim.Stats(); st.Data != 0 || b.bootState().Pending != "B" {
		t.Fatalf("before the gateway's reboot: %d bytes uploaded to the MCU, bootloader %+v", st.Data, b.bootState())
	}
	b.reset()
	if err := b.deploy(u, "wf", ""); err != nil {
		t.Fatal(err)
	}
	if rc, _, steps, _ := b.lastResult(); rc != 700 || fmt.Sprint(steps) != "[700 700]" {
		t.Fatalf("result %v, steps %v; reports %v", rc, steps, b.h.all())
	}
	if ag := lastState(b.h); ag["installedUpdateId"] != u.id.InstalledUpdateID() {
		t.Errorf("installed %v", ag["installedUpdateId"])
	}
	b.checkRuns("motor", "2.0.0")
	rec := b.agent().Record()
	if m := rec.MCUs["motor"]; m == nil || m.Criteria != "motor-2.0.0" || !strings.HasPrefix(m.Version, "2.0.0") || len(m.Hash) == 0 {
		t.Fatalf("journal: %+v", rec.MCUs)
	}

	data := b.mcus["motor"].sim.Stats().Data
	if err := b.deploy(u, "wf-again", ""); err != nil {
		t.Fatal(err)
	}
	if rc, _, steps, _ := b.lastResult(); rc != 700 || fmt.Sprint(steps) != "[603 603]" || b.mcus["motor"].sim.Stats().Data != data {
		t.Fatalf("again: result %v, steps %v, %d bytes uploaded", rc, steps, b.mcus["motor"].sim.Stats().Data-data)
	}
}

// An MCU image that fails its health check is reverted by MCUboot (the second reset), the
// deployment fails with the code of the failed check and of the MCU (the second configured:
// last digit 1), and the MCU runs its old image confirmed. An update of MCUs alone does not
// reboot the gateway. The step of the MCU that passed succeeded.
func TestMCUHealthFailsReverted(t *testing.T) {
	b := newMCUBoard(t, nil, "motor", "radio")
	b.healthy = func(class string, img *mcuboot.Image) bool { return class != "radio" || img.Header.Version.Major < 3 }
	ms, mf := b.mcuImage("motor", "3.0.0", 16000)
	rs, rf := b.mcuImage("radio", "3.0.0", 14000)
	u := b.publish("3.0", []mstep{ms, rs}, []mfile{mf, rf})
	if err := b.deploy(u, "wf", ""); err != nil {
		t.Fatal(err)
	}
	rc, erc, steps, stepERC := b.lastResult()
	want := ERCMCUHealth + 1
	if rc != 0 || erc != want || fmt.Sprint(steps) != "[700 0]" || stepERC[1] != want {
		t.Fatalf("result %v %v, steps %v %v; want 0 %v", rc, erc, steps, stepERC, want)
	}
	if ERCMCUHealth+1 != handlerERC(0x131) {
		t.Fatal("the MCU's index is not the code's last digit")
	}
	if d := fmt.Sprint(lastState(b.h)["lastInstallResult"]); !strings.Contains(d, "radio") || !strings.Contains(d, "does not come up") {
		t.Errorf("the details do not say which MCU and why: %s", d)
	}
	b.checkRuns("radio", "1.0.0")
	b.checkRuns("motor", "3.0.0")
	if b.Boots() != 1 {
		t.Errorf("the gateway rebooted for an update of its MCUs alone (%d boots)", b.Boots())
	}
}

// An MCU that does not answer fails its own step with its own code; the gateway and the
// other MCU (after it) are updated all the same. installedUpdateId stays the old one until a retry of
// the deployment, with the MCU back, updates it (and nothing else: no reboot, no upload to
// the other MCU).
func TestMCUUnpluggedThenRetry(t *testing.T) {
	b := newMCUBoard(t, nil, "motor", "radio")
	b.mcus["radio"].unplugged.Store(true)
	rs, rf := b.rootfsImage("2.0")
	ms, mf := b.mcuImage("motor", "2.0.0", 16000)
	ra, raf := b.mcuImage("radio", "2.0.0", 14000)
	u := b.publish("2.0", []mstep{rs, ra, ms}, []mfile{rf, raf, mf})
	if err := b.deploy(u, "wf", ""); !errors.Is(err, ErrRebooting) {
		t.Fatal(err)
	}
	b.reset()
	if err := b.deploy(u, "wf", ""); err != nil {
		t.Fatal(err)
	}
	rc, erc, steps, _ := b.lastResult()
	if want := ERCMCUUnreachable + 1; rc != 0 || erc != want || fmt.Sprint(steps) != "[700 0 700]" {
		t.Fatalf("result %v %v, steps %v; want %v", rc, erc, steps, want)
	}
	if ag := lastState(b.h); ag["installedUpdateId"] == u.id.InstalledUpdateID() {
		t.Error("the update is reported installed while an MCU lacks it")
	}
	b.checkRuns("motor", "2.0.0")
	b.checkRuns("radio", "1.0.0")
	if st := b.bootState(); st.Primary != "B" || st.Pending != "" {
		t.Fatalf("the gateway's bank: %+v", st)
	}

	b.mcus["radio"].unplugged.Store(false)
	boots, motor := b.Boots(), b.mcus["motor"].sim.Stats().Data
	if err := b.deploy(u, "wf", "retry-1"); err != nil {
		t.Fatal(err)
	}
	if rc, _, steps, _ := b.lastResult(); rc != 700 || fmt.Sprint(steps) != "[603 700 603]" {
		t.Fatalf("retry: result %v, steps %v", rc, steps)
	}
	if ag := lastState(b.h); ag["installedUpdateId"] != u.id.InstalledUpdateID() {
		t.Errorf("after the retry: installed %v", ag["installedUpdateId"])
	}
	b.checkRuns("radio", "2.0.0")
	if b.Boots() != boots || b.mcus["motor"].sim.Stats().Data != motor {
		t.Errorf("the retry rebooted the gateway (%d boots) or uploaded to the updated MCU (%d bytes)", b.Boots()-boots, b.mcus["motor"].sim.Stats().Data-motor)
	}
}

// An image older than what the MCU runs is refused before its upload completes (and never
// tested); one signed by another key too.
func TestMCUImageRefused(t *testing.T) {
	b := newMCUBoard(t, nil, "motor")
	old := b.signer.Image(t, "0.9.0", 12000)
	other := mcutest.NewSigner(t).Image(t, "2.0.0", 12000)
	for i, tc := range []struct {
		img  []byte
		want adu.ExtendedResultCode
	}{{old, ERCDowngrade}, {other, ERCImageUnknownKey}} {
		f := mfile{id: "f", name: fmt.Sprintf("motor-%d.bin", i), data: tc.img}
		u := b.publish(fmt.Sprintf("1.%d", i), []mstep{{file: "f", class: "motor", criteria: f.name}}, []mfile{f})
		if err := b.deploy(u, fmt.Sprintf("wf-%d", i), ""); err != nil {
			t.Fatal(err)
		}
		if rc, erc, _, _ := b.lastResult(); rc != 0 || erc != tc.want {
			t.Errorf("image %d: result %v %v, want %v", i, rc, erc, tc.want)
		}
		b.checkRuns("motor", "1.0.0")
	}
}

// An MCU reset at every frame of its upload (before the frame, or after it with the reply
// lost), and a power cut of the MCU in the frame's first or second flash write: the upload
// goes on from where the MCU stands, the update completes, the MCU always boots a good
// image, and no byte it acknowledged is sent again beyond one frame.
func TestMCUFaultAtEveryFrame(t *testing.T) {
	frames := uploadFrames(t)
	faults := []mcusim.Fault{{Kind: mcusim.FaultReset}, {Kind: mcusim.FaultLostReply}, {Kind: mcusim.FaultPowerCut}, {Kind: mcusim.FaultPowerCut, Ops: 1}}
	step := 1
	if testing.Short() {
		step = 3
	}
	for k := 0; k < frames; k += step {
		for _, f := range faults {
			t.Run(fmt.Sprintf("frame %d fault %d ops %d", k, f.Kind, f.Ops), func(t *testing.T) {
				seen := 0
				b := newMCUBoard(t, map[string]func(int, smp.Header) mcusim.Fault{"motor": func(_ int, h smp.Header) mcusim.Fault {
					if h.Group == smp.GroupImage && h.ID == smp.IDUpload {
						if seen++; seen == k+1 {
							return f
						}
					}
					return mcusim.Fault{}
				}}, "motor")
				b.updateMotor()
				// A request the transport sends again after its timeout (its reply lost, or
				// late on a loaded machine) is the same frame: each may count once more.
				if st, again := b.mcus["motor"].sim.Stats(), b.transportResends(); st.Resent > int64(fastSMP.MaxPacket)*int64(1+again) {
					t.Errorf("%d acknowledged bytes sent again, more than a frame (and %d requests the transport sent again)", st.Resent, again)
				}
			})
		}
	}
}

// updateMotor deploys an update of the motor MCU alone to 2.0.0 and checks that it succeeded
// and the MCU runs it.
func (b *mcuBoard) updateMotor() {
	b.t.Helper()
	ms, mf := b.mcuImage("motor", "2.0.0", 16000)
	if err := b.deploy(b.publish("2.0", []mstep{ms}, []mfile{mf}), "wf", ""); err != nil {
		b.t.Fatal(err)
	}
	if rc, erc, _, _ := b.lastResult(); rc != 700 {
		b.t.Fatalf("result %v %v", rc, erc)
	}
	b.checkRuns("motor", "2.0.0")
}

// transportResends counts the requests the agents' SMP clients sent again after a timeout.
func (b *mcuBoard) transportResends() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.clients {
		n += c.Stats().Resent
	}
	return n
}

// uploadFrames counts the upload frames of the image of TestMCUFaultAtEveryFrame.
func uploadFrames(t *testing.T) int {
	n := 0
	b := newMCUBoard(t, map[string]func(int, smp.Header) mcusim.Fault{"motor": func(_ int, h smp.Header) mcusim.Fault {
		if h.Group == smp.GroupImage && h.ID == smp.IDUpload {
			n++
		}
		return mcusim.Fault{}
	}}, "motor")
	ms, mf := b.mcuImage("motor", "2.0.0", 16000)
	if err := b.deploy(b.publish("2.0", []mstep{ms}, []mfile{mf}), "wf", ""); err != nil || n == 0 {
		t.Fatalf("%v, %d frames", err, n)
	}
	return n
}

// An MCU that loses its upload at a reset (Zephyr keeps it in RAM) answers the next frame
// with offset 0: the agent streams the image again from the start, and the update completes.
func TestMCULosesUploadAtReset(t *testing.T) {
	var b *mcuBoard
	frames := 0
	b = newMCUBoard(t, map[string]func(int, smp.Header) mcusim.Fault{"motor": func(_ int, h smp.Header) mcusim.Fault {
		if h.Group != smp.GroupImage || h.ID != smp.IDUpload {
			return mcusim.Fault{}
		}
		if frames++; frames != 6 {
			return mcusim.Fault{}
		}
		// The upload state (after both slots) is gone with the reset.
		m := b.mcus["motor"].sim
		if err := m.Flash().Erase(2*mcusim.DefaultSlotSize, 4*mcusim.DefaultEraseSize); err != nil {
			t.Error(err)
		}
		return mcusim.Fault{Kind: mcusim.FaultReset}
	}}, "motor")
	b.updateMotor()
}

// An MCU that runs the step's image confirmed already (the journal that knew it is gone) is
// not reset again: the agent uploads the image (the MCU's upload state, outlived by the swap,
// does not match its slot: erased and sent whole), finds it running confirmed, and is done.
func TestMCUAlreadyRunsImage(t *testing.T) {
	b := newMCUBoard(t, nil, "motor")
	ms, mf := b.mcuImage("motor", "2.0.0", 16000)
	u := b.publish("2.0", []mstep{ms}, []mfile{mf})
	if err := b.deploy(u, "wf", ""); err != nil {
		t.Fatal(err)
	}
	b.checkRuns("motor", "2.0.0")
	b.wipeState()
	boots := b.mcus["motor"].sim.Stats().Boots
	if err := b.deploy(u, "wf-2", ""); err != nil {
		t.Fatal(err)
	}
	if rc, erc, _, _ := b.lastResult(); rc != 700 {
		t.Fatalf("result %v %v", rc, erc)
	}
	b.checkRuns("motor", "2.0.0")
	if n := b.mcus["motor"].sim.Stats().Boots - boots; n != 0 {
		t.Errorf("the MCU running the image confirmed was reset %d times", n)
	}
}

// An MCU's own keys (keyring, pub) are loaded for its class; an MCU without them has none
// (the agent's keys verify its images); a key file that is missing is an error naming the MCU.
func TestLoadMCUKeyrings(t *testing.T) {
	s := mcutest.NewSigner(t)
	_, pub := s.WriteKeys(t, t.TempDir())
	c := &slots.Config{MCUs: []slots.MCUConfig{{Name: "motor", Class: "motor", Pub: []string{pub}}, {Name: "radio", Class: "radio"}}}
	krs, err := LoadMCUKeyrings(c)
	if err != nil || len(krs) != 1 || krs["motor"] == nil {
		t.Fatalf("%v, %v", krs, err)
	}
	if _, err := mcuboot.VerifyTrusted(s.Image(t, "1.0.0", 1000), krs["motor"]); err != nil {
		t.Fatalf("the motor's key does not verify its image: %v", err)
	}
	c.MCUs[1].Pub = []string{pub + ".missing"}
	if _, err := LoadMCUKeyrings(c); err == nil || !strings.Contains(err.Error(), "slots.mcu radio") {
		t.Fatalf("a missing key file: %v", err)
	}
}
