package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/smp"
)

// HandlerImage is the update handler this agent implements: one image file per step,
// written into the spare bank's slot of the step's class.
const HandlerImage = "aduflash/image:1"

// AgentName is how deviceProperties.aduVer names this agent.
const AgentName = "aduflash"

// AduVer is deviceProperties.aduVer of this agent at version: "aduflash;agent/1.2.0", the
// "<agent>;agent/<version>" form of Microsoft's Linux agent ("DU;agent/1.1.0") and of the NetX
// Duo agent ("AzureRTOS;agent/6.2.0"), which the service takes. A leading "v" is dropped; a
// version that does not start with a digit (a development build: "dev", a commit) is
// reported as "0.0.0-<version>".
func AduVer(version string) string {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	if v == "" {
		v = "dev"
	}
	if v[0] < '0' || v[0] > '9' {
		v = "0.0.0-" + v
	}
	return AgentName + ";agent/" + v
}

// Journal file names in the state folder.
const (
	RecordName         = journal.DefaultName // the Record
	RootKeyPackageName = "rootkeys"          // the last valid root-key package
	HeaderName         = "header"            // the aduimg header of the image being written
)

// Hub is the IoT Hub connection the agent runs on (*iothub.Client has it).
type Hub interface {
	Desired() <-chan iothub.DesiredUpdate
	UpdateReported(ctx context.Context, patch json.RawMessage) (int64, error)
}

// Options configure an Agent. Layout, Bootloader, StateDir and Keyring are required.
type Options struct {
	// Settings are what the [agent] section decides (Config.Options fills them from it).
	Settings

	Layout     *slots.Layout
	Bootloader bootloader.Backend
	JournalFS  journal.FS // nil: the OS file system
	// Keyring holds the keys trusted to sign images.
	Keyring *image.Keyring
	// MCUKeyrings hold the keys of the attached MCUs that have their own, by class
	// (LoadMCUKeyrings); the others' images are verified with Keyring.
	MCUKeyrings map[string]*image.Keyring
	// OpenMCU connects to an attached MCU (nil: DialMCU).
	OpenMCU func(ctx context.Context, m *slots.MCUConfig) (*smp.Client, error)

	// AduVer is deviceProperties.aduVer (default AduVer(""); aduagent reports AduVer of its
	// build's version).
	AduVer string
	// FactoryUpdateID is the update the factory image is: a bank the agent has no record of
	// (it never wrote it) is taken to hold it, reported as installedUpdateId with
	// installedCriteria equal to its version in every slot class (nil: such a bank holds
	// nothing known).
	FactoryUpdateID *adu.UpdateID
	// DeviceName names the device in the blob paths of log uploads (the IoT Hub device id;
	// default the host name).
	DeviceName string
	// DeviceInformation is reported with the non-contract models (nil: ReadDeviceInformation).
	DeviceInformation func() DeviceInformation

	// Roots are trusted manifest root keys besides the built-in ones (NoBuiltinRoots
	// leaves those out).
	Roots []adu.RootKey

	HealthOptions health.Options

	// Reboot restarts the device (nil: Run just returns ErrRebooting).
	Reboot func(ctx context.Context) error

	HTTP  *http.Client // nil: DefaultHTTPClient
	Retry download.RetryPolicy
	// StallTimeout abandons (and retries) a download request that delivers no byte for this
	// long (0: download's default, 60s).
	StallTimeout  time.Duration
	WriterOptions []slots.Option
	// Heartbeat, if set, is called by the main loop at least every HeartbeatInterval
	// (default 5s): a watchdog feeder's Beat.
	Heartbeat         func()
	HeartbeatInterval time.Duration
	// OnBytes, if set, is told how many payload bytes went into a slot.
	OnBytes func(n int64)
	// Meter, if set, follows the stages of every slot write (progress bars); an
	// install.AdaptiveMeter also hears what an adaptive install fetched and reused.
	Meter  install.Meter
	Logger *slog.Logger
	Now    func() time.Time
	// ReportAttempts bounds the tries of one reported patch (default 3), ReportBackoff the
	// pause between them (default 2s).
	ReportAttempts int
	ReportBackoff  time.Duration
}

// Agent is the on-device update agent.
type Agent struct {
	o     Options
	iface string
	j     *journal.Journal
	rkj   *journal.Journal
	hj    *journal.Journal // the image header of the step being written

	savedHeader []byte // SHA-256 of the header hj holds
	log         *slog.Logger

	mu  sync.Mutex // guards rec
	rec Record

	healthy        atomic.Bool
	booted         bool
	cancelIdleSent bool // the idle answer to a cancel with nothing running went out

	repMu sync.Mutex // one reported patch at a time
	hub   Hub

	unlock func() error
}

// New opens the agent's state, locking the state folder against other agents (ErrBusy).
// A corrupt journal is an error naming the file; the caller
// decides (the daemon refuses to start: the spare slot may hold anything).
func New(o Options) (*Agent, error) {
	if o.Layout == nil || o.Bootloader == nil || o.StateDir == "" {
		return nil, fmt.Errorf("%w: Layout, Bootloader and StateDir are required", ErrConfig)
	}
	if o.Manufacturer == "" || o.Model == "" {
		return nil, fmt.Errorf("%w: manufacturer and model are required", ErrConfig)
	}
	if o.ModelID == "" {
		o.ModelID = adu.ModelV3
	}
	iface, err := adu.InterfaceOf(o.ModelID)
	if err != nil {
		return nil, fmt.Errorf("%w: model: %w", ErrConfig, err)
	}
	if o.AduVer == "" {
		o.AduVer = AduVer("")
	}
	if o.DeviceName == "" {
		o.DeviceName, _ = os.Hostname()
	}
	if o.CompatPropertyNames == "" {
		o.CompatPropertyNames = DefaultCompatPropertyNames
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = DefaultHealthTimeout
	}
	if o.MaxTrialReboots <= 0 {
		o.MaxTrialReboots = 3
	}
	if o.MaxChunkSize <= 0 {
		o.MaxChunkSize = DefaultMaxChunkSize
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 5 * time.Second
	}
	if o.ReportAttempts <= 0 {
		o.ReportAttempts = 3
	}
	if o.ReportBackoff <= 0 {
		o.ReportBackoff = 2 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HTTP == nil {
		o.HTTP = DefaultHTTPClient() // one client (and connection pool) for every download
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := health.Validate(o.HealthChecks); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var jo []journal.Option
	if o.JournalFS != nil {
		jo = append(jo, journal.WithFS(o.JournalFS))
	}
	a := &Agent{o: o, iface: iface, log: o.Logger}
	if o.JournalFS == nil { // a simulated file system needs no lock against other processes
		if a.unlock, err = lockDir(o.StateDir); err != nil {
			return nil, err
		}
	}
	fail := func(err error) (*Agent, error) {
		a.Close()
		return nil, err
	}
	if a.j, err = journal.Open(o.StateDir, append(jo, journal.WithName(RecordName))...); err != nil {
		return fail(err)
	}
	if a.rkj, err = journal.Open(o.StateDir, append(jo, journal.WithName(RootKeyPackageName))...); err != nil {
		return fail(err)
	}
	if a.hj, err = journal.Open(o.StateDir, append(jo, journal.WithName(HeaderName), journal.WithMaxSize(16<<20))...); err != nil {
		return fail(err)
	}
	if _, err := a.j.Load(&a.rec); err != nil {
		return fail(err)
	}
	if a.rec.Version > StateVersion {
		// A newer agent wrote it (the agent was downgraded): its unknown members are lost
		// at the next save; what this version knows is used.
		a.log.Warn("the journal has a newer layout than this agent", "version", a.rec.Version, "known", StateVersion)
	}
	var legacy legacyRecord
	if a.rec.Version < 4 && a.rec.Deployment != nil {
		if _, err := a.j.Load(&legacy); err != nil {
			return fail(err)
		}
	}
	a.rec.migrate(a.classes(), &legacy)
	if a.rec.Deployment == nil {
		if err := clearFrameCaches(a.fsys(), o.StateDir); err != nil {
			a.log.Warn("the kept ranges of an earlier adaptive install could not be removed", "err", err)
		}
	}
	a.healthy.Store(true)
	return a, nil
}

// Close releases the state folder's lock (another aduagent may then use it).
func (a *Agent) Close() error {
	if a.unlock == nil {
		return nil
	}
	err := a.unlock()
	a.unlock = nil
	return err
}

// Record returns a copy of the agent's persistent record.
func (a *Agent) Record() Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, _ := json.Marshal(a.rec)
	var r Record
	json.Unmarshal(b, &r)
	return r
}

// Healthy tells a watchdog feeder whether the agent still wants the board to live: false
// once the running (trial) bank failed its health checks.
func (a *Agent) Healthy() bool { return a.healthy.Load() }

// save persists the record after fn changed it.
func (a *Agent) save(fn func(r *Record)) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	old, _ := json.Marshal(a.rec)
	fn(&a.rec)
	if err := a.j.Save(&a.rec); err != nil {
		var r Record
		json.Unmarshal(old, &r)
		a.rec = r
		return fmt.Errorf("saving the journal: %w", err)
	}
	return nil
}

func (a *Agent) view(fn func(r *Record)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fn(&a.rec)
}

// reboot asks the device to restart and returns ErrRebooting.
func (a *Agent) reboot(ctx context.Context, why string) error {
	a.log.Info("rebooting", "reason", why)
	if a.o.Reboot != nil {
		if err := a.o.Reboot(ctx); err != nil {
			return fmt.Errorf("reboot (%s): %w", why, err)
		}
	}
	return ErrRebooting
}

// activeBank returns the bank that booted.
func (a *Agent) activeBank() (string, error) {
	b, err := a.o.Layout.ActiveBank()
	if err != nil {
		return "", err
	}
	if b == "" {
		return "", fmt.Errorf("%w: no slots configured", slots.ErrActiveUnknown)
	}
	return b, nil
}

// spareBank returns the bank after active in the configured order.
func (a *Agent) spareBank(active string) (string, error) {
	banks := a.o.Layout.Config.Banks
	for i, b := range banks {
		if b == active {
			return banks[(i+1)%len(banks)], nil
		}
	}
	return "", fmt.Errorf("%w: the running bank %q is not configured", ErrSlot, active)
}

// Boot reconciles the state after a start: a deployment that marked a bank pending is
// finished here, by health-checking and confirming the bank that booted, or by recording
// the rollback. It returns ErrRebooting after asking for a reboot (into the pending bank
// when the last start did not get there, or back into the good bank after failed checks).
func (a *Agent) Boot(ctx context.Context) error {
	a.booted = true
	a.syncFloors()
	if err := a.bootBank(ctx); err != nil {
		return err
	}
	dep := a.deploymentIn(PhaseMCU)
	if dep == nil {
		return nil
	}
	// The gateway's part is done; its MCUs come next (an MCU left on trial gets its decision).
	a.log.Info("updating the attached MCUs of a deployment after start", "workflow", dep.WorkflowID, "update", dep.UpdateID.String())
	return a.updateMCUs(ctx, dep)
}

// deploymentIn returns a copy of the deployment in progress when it is in phase (nil: none).
func (a *Agent) deploymentIn(phase string) *Deployment {
	var dep *Deployment
	a.view(func(r *Record) {
		if r.Deployment != nil && r.Deployment.Phase == phase {
			d := *r.Deployment
			dep = &d
		}
	})
	return dep
}

// bootBank finishes a deployment whose bank was marked pending: see Boot.
func (a *Agent) bootBank(ctx context.Context) error {
	dep := a.deploymentIn(PhasePending)
	if dep == nil {
		return nil
	}
	active, err := a.activeBank()
	if err != nil {
		return fmt.Errorf("finishing deployment %s: %w", dep.WorkflowID, err)
	}
	st, err := a.o.Bootloader.State()
	if err != nil {
		return fmt.Errorf("%w: reading the state: %w", ErrBootloader, err)
	}
	a.log.Info("finishing a deployment after start", "workflow", dep.WorkflowID, "update", dep.UpdateID.String(),
		"target", dep.Bank, "running", active, "bootloader", fmt.Sprintf("%+v", st))
	switch {
	case active == dep.Bank:
		return a.trial(ctx, dep, st)
	case active != dep.From:
		return fmt.Errorf("finishing deployment %s: running bank %s is neither the old (%s) nor the new one (%s)", dep.WorkflowID, active, dep.From, dep.Bank)
	case st.Pending == bootloader.Bank(dep.Bank):
		// Marked pending, but this start is not in it (the reboot did not happen, or the
		// bootloader counted a failed try without giving up yet).
		if dep.Reboots >= a.o.MaxTrialReboots {
			return a.finishFailed(dep, fmt.Errorf("%w: %d reboots did not start bank %s", ErrRolledBack, dep.Reboots, dep.Bank), true)
		}
		if err := a.save(func(r *Record) { r.Deployment.PendingMarked = true; r.Deployment.Reboots++ }); err != nil {
			return err
		}
		return a.reboot(ctx, "bank "+dep.Bank+" is pending")
	case !dep.PendingMarked && !st.IsBad(bootloader.Bank(dep.Bank)):
		// The power went before the bootloader transition: do it now.
		return a.markPendingAndReboot(ctx, dep.Bank)
	default:
		return a.finishFailed(dep, fmt.Errorf("%w: bank %s did not stay up; the device runs bank %s again", ErrRolledBack, dep.Bank, active), true)
	}
}

// trial runs the health checks in the freshly booted bank, then confirms it or rolls back.
func (a *Agent) trial(ctx context.Context, dep *Deployment, st bootloader.State) error {
	if b := bootloader.Bank(dep.Bank); st.Pending != b && st.Primary == b && !st.IsBad(b) {
		// Confirmed before the last power cut; only the journal is behind.
		return a.finishSucceeded(dep)
	}
	hctx, cancel := context.WithTimeout(ctx, a.o.HealthTimeout)
	// The checks are bounded by HealthTimeout; keep the watchdog fed meanwhile.
	stopBeat := a.beatWhile(hctx)
	rep, err := health.Run(hctx, a.o.HealthChecks, a.o.HealthOptions)
	stopBeat()
	cancel()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if rep.Interrupted && ctx.Err() != nil {
		return ctx.Err() // shut down: no verdict, the next start checks again
	}
	if rep.Healthy {
		if err := a.confirm(dep); err != nil {
			return fmt.Errorf("%w: confirming bank %s: %w", ErrBootloader, dep.Bank, err)
		}
		a.log.Info("health checks passed; bank confirmed", "bank", dep.Bank)
		return a.finishSucceeded(dep)
	}
	a.healthy.Store(false)
	detail := "health checks failed"
	for _, r := range rep.Results {
		if !r.OK {
			detail = "health check " + r.Name + " failed: " + checkSummary(r)
			break
		}
	}
	a.log.Warn("rolling back", "bank", dep.Bank, "reason", detail)
	if err := a.o.Bootloader.MarkBad(bootloader.Bank(dep.Bank)); err != nil {
		return fmt.Errorf("%w: marking bank %s bad: %w", ErrBootloader, dep.Bank, err)
	}
	if err := a.finishFailed(dep, fmt.Errorf("%w: %s", ErrHealth, detail), false); err != nil {
		return err
	}
	return a.reboot(ctx, "bank "+dep.Bank+" failed its health checks")
}

func (a *Agent) finishSucceeded(dep *Deployment) error {
	if dep.hasMCUs() {
		// The bank is confirmed; the MCUs come next (mcu.go), and the update counts as
		// installed once they took it.
		a.healthy.Store(true)
		if err := a.save(func(r *Record) {
			var prev *adu.UpdateID
			if b := r.Banks[dep.From]; b != nil {
				prev = b.UpdateID
			}
			r.recordBank(dep, prev)
			r.Deployment.Phase = PhaseMCU
		}); err != nil {
			return err
		}
		a.syncFloors()
		return nil
	}
	out := &Outcome{WorkflowID: dep.WorkflowID, RetryTimestamp: dep.RetryTimestamp, Local: dep.Local, UpdateID: dep.UpdateID,
		Succeeded: true, ResultCode: adu.ResultApplySuccess, Bank: dep.Bank, Finished: a.o.Now().UTC()}
	for range dep.manifestSteps() {
		out.Steps = append(out.Steps, StepOutcome{ResultCode: adu.ResultApplySuccess})
	}
	a.healthy.Store(true)
	err := a.save(func(r *Record) {
		r.recordBank(dep, &dep.UpdateID)
		r.Last, r.Deployment = out, nil
	})
	if err != nil {
		return err
	}
	a.syncFloors() // the bank may have been confirmed without them (aduagent mark-good)
	return nil
}

// recordBank records what the confirmed bank of dep holds (uid: the update it counts as
// installed) and raises the floors of its classes.
func (r *Record) recordBank(dep *Deployment, uid *adu.UpdateID) {
	bi := dep.bankInfo()
	bi.UpdateID = uid
	for class, n := range dep.floors() {
		r.raiseFloor(class, n)
	}
	if r.Banks == nil {
		r.Banks = map[string]*BankInfo{}
	}
	r.Banks[dep.Bank] = bi
}

// bankInfo is what the deployment's bank holds: what its steps wrote, and what its copies
// took over from the bank that ran.
func (d *Deployment) bankInfo() *BankInfo {
	bi := &BankInfo{UpdateID: &d.UpdateID, Criteria: map[string]string{}, Versions: map[string]string{}, Sizes: map[string]int64{}}
	put := func(class, criteria, version string, size int64) {
		if criteria != "" {
			bi.Criteria[class] = criteria
		}
		if version != "" {
			bi.Versions[class] = version
		}
		if size > 0 {
			bi.Sizes[class] = size
		}
	}
	for _, s := range d.Steps {
		if s.MCU != nil {
			continue
		}
		if info := s.Progress.Info; info != nil {
			put(s.Class, s.Criteria, info.Version, info.RawSize)
		} else {
			put(s.Class, s.Criteria, "", 0)
		}
	}
	for _, c := range d.Copies {
		put(c.Class, c.Criteria, c.Version, c.Size)
	}
	return bi
}

// finishFailed records a failed deployment; markBad also marks the target bank bad in the
// bootloader (unless it already is), so it is not booted again.
func (a *Agent) finishFailed(dep *Deployment, cause error, markBad bool) error {
	if markBad {
		if st, err := a.o.Bootloader.State(); err == nil && !st.IsBad(bootloader.Bank(dep.Bank)) {
			if err := a.o.Bootloader.MarkBad(bootloader.Bank(dep.Bank)); err != nil {
				a.log.Warn("marking the rolled-back bank bad failed", "bank", dep.Bank, "err", err)
			}
		}
	}
	out := a.failure(dep.WorkflowID, dep.RetryTimestamp, dep.Local, dep.UpdateID, dep.manifestSteps(), cause)
	out.Bank = dep.Bank
	a.log.Warn("deployment failed", "workflow", dep.WorkflowID, "update", dep.UpdateID.String(), "err", cause)
	return a.save(func(r *Record) { r.Last, r.Deployment = out, nil })
}

func (a *Agent) failure(wfID, retry string, local bool, uid adu.UpdateID, steps int, cause error) *Outcome {
	rc, erc := ResultFor(cause)
	out := &Outcome{WorkflowID: wfID, RetryTimestamp: retry, Local: local, UpdateID: uid, ResultCode: rc,
		ExtendedResultCode: erc, Details: cause.Error(), Finished: a.o.Now().UTC()}
	for i := 0; i < steps; i++ {
		out.Steps = append(out.Steps, StepOutcome{ResultCode: rc, ExtendedResultCode: erc, Details: cause.Error()})
	}
	return out
}

// markPendingAndReboot does the bootloader transition the power took away, then reboots.
func (a *Agent) markPendingAndReboot(ctx context.Context, bank string) error {
	if err := a.markPending(bank); err != nil {
		return err
	}
	return a.reboot(ctx, "bank "+bank+" is pending")
}

func checkSummary(r health.Result) string {
	var s string
	switch {
	case r.TimedOut:
		s = "timed out"
	case r.Error != "":
		s = r.Error
	default:
		s = fmt.Sprintf("exit code %d", r.ExitCode)
	}
	if out := strings.TrimSpace(r.Output); out != "" {
		if len(out) > 200 {
			out = "…" + out[len(out)-200:]
		}
		s += ": " + out
	}
	return s
}

// beatWhile calls the heartbeat every HeartbeatInterval until stopped or ctx ends.
func (a *Agent) beatWhile(ctx context.Context) (stop func()) {
	if a.o.Heartbeat == nil {
		return func() {}
	}
	a.o.Heartbeat()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(a.o.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				a.o.Heartbeat()
			}
		}
	}()
	return func() { cancel(); <-done }
}
