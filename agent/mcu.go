package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/health"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/smp"
)

// MCUs attached to the gateway ([[slots.mcu]]) are slots that no bank owns: a step whose
// slotClass is an MCU's class updates that MCU over SMP. Order: the gateway's own bank goes
// first (written, pending, rebooted into, health-checked, confirmed); the MCUs are updated
// after, one after the other, from the confirmed bank. So a gateway that rolls back never
// meets MCU firmware newer than what it knew (the MCUs were not touched), and an MCU that
// fails is reverted by MCUboot under a gateway that runs the software shipped with it. A
// deployment without bank steps (or whose bank steps the running bank holds already) updates
// its MCUs at once, without a reboot.
//
// Each MCU step goes through phases kept in the journal (MCUStep.Phase), each decided from
// what the MCU reports, so that a gateway power cut anywhere resumes where the MCU stands:
// upload (the install pipeline streams the verified image into the MCU's secondary slot; the
// MCU says where its upload stands and what it holds is not sent again), test, reset (MCUboot
// swaps the image in on trial), check (the MCU answers running the new image, not confirmed:
// its health check, then confirm), revert (the check failed: one more reset, and MCUboot
// swaps the old image back). A step never uploads into an MCU that runs an image on trial
// (it is reset first: MCUboot reverts it), and an MCU that runs the step's image confirmed
// is done.

// MCU phases of an MCUStep.
const (
	MCUPhaseUpload = ""       // the image is streamed into the MCU's secondary slot
	MCUPhaseTest   = "test"   // uploaded and verified; marking it for test comes next
	MCUPhaseReset  = "reset"  // marked for test; the reset that boots it comes next
	MCUPhaseCheck  = "check"  // the MCU runs it on trial: health check, then confirm
	MCUPhaseRevert = "revert" // the check failed: the reset that makes MCUboot revert comes next
)

// MCUStep is how far the update of an attached MCU went.
type MCUStep struct {
	Name  string `json:"name"`
	Index int    `json:"index"` // the MCU's place among the configured MCUs (in its result codes)
	Phase string `json:"phase,omitempty"`
	// Hash is the image's hash (MCUboot's SHA256 TLV), known once the upload is verified.
	Hash []byte `json:"hash,omitempty"`
	// Why is the failed health check, while the revert is under way.
	Why string `json:"why,omitempty"`
	// Result is the step's outcome once decided.
	Result *StepOutcome `json:"result,omitempty"`
}

// MCUInfo is what an attached MCU runs, as far as this agent installed it.
type MCUInfo struct {
	UpdateID *MCUUpdate `json:"update,omitempty"`
	Criteria string     `json:"installed_criteria,omitempty"`
	Version  string     `json:"version,omitempty"`
	Hash     []byte     `json:"hash,omitempty"`
}

// MCUUpdate names the update that last installed an MCU's image.
type MCUUpdate struct {
	Provider string `json:"provider"`
	Name     string `json:"name"`
	Version  string `json:"version"`
}

// DialMCU connects to an attached MCU over the transport its config names.
func DialMCU(ctx context.Context, m *slots.MCUConfig) (*smp.Client, error) {
	var t smp.Transport
	var err error
	switch m.Transport {
	case slots.MCUUDP:
		t, err = smp.DialUDP(ctx, m.Address)
	default:
		t, err = smp.OpenSerial(m.Port, m.Baud, smp.SerialOptions{LineSize: m.LineSize})
	}
	if err != nil {
		return nil, err
	}
	return smp.NewClient(t, smp.Options{Timeout: m.Timeout}), nil
}

// mcuIndex is m's place among the configured MCUs.
func (a *Agent) mcuIndex(class string) int {
	for i, m := range a.o.Layout.Config.MCUs {
		if m.Class == class {
			return i
		}
	}
	return 0
}

// deployMCUs runs a deployment that leaves the gateway's banks alone: its MCU steps, now.
func (a *Agent) deployMCUs(ctx context.Context, dep *Deployment, res jobResult) jobResult {
	dep.Phase = PhaseMCU
	if err := a.save(func(r *Record) { r.Deployment = dep }); err != nil {
		res.err = err
		return res
	}
	err := a.updateMCUs(ctx, dep)
	switch {
	case ctx.Err() != nil:
		// Cancelled while an image was being uploaded (no MCU runs it on trial): the upload
		// resumes from where the MCU stands if the deployment comes again.
		res.outcome, res.err = a.fail(res.wf, dep.UpdateID, dep.manifestSteps(), ctx.Err())
	case err != nil:
		res.err = err
	default:
		a.view(func(r *Record) { res.outcome = r.Last })
	}
	return res
}

// updateMCUs runs the MCU steps of the deployment that are not decided yet, one after the
// other (an MCU that fails does not stop the others), then finishes the deployment.
func (a *Agent) updateMCUs(ctx context.Context, dep *Deployment) error {
	for i := range dep.Steps {
		st := &dep.Steps[i]
		if st.MCU == nil || st.Installed || st.MCU.Result != nil {
			continue
		}
		res, err := a.updateMCU(ctx, i, st)
		if err != nil {
			return err // no decision (shutdown, journal): the next start goes on
		}
		if err := a.saveMCU(i, func(m *MCUStep) { m.Result = res }); err != nil {
			return err
		}
		st.MCU.Result = res
	}
	return a.finishMCUs(dep)
}

// saveMCU changes step i's MCU progress in the journal.
func (a *Agent) saveMCU(i int, fn func(*MCUStep)) error {
	err := a.save(func(r *Record) {
		if r.Deployment != nil && i < len(r.Deployment.Steps) && r.Deployment.Steps[i].MCU != nil {
			fn(r.Deployment.Steps[i].MCU)
		}
	})
	if err != nil {
		return fmt.Errorf("%w: %w", errJournal, err)
	}
	return nil
}

// mcuRun is one MCU step on one connection.
type mcuRun struct {
	a   *Agent
	i   int
	st  *StepState
	cfg *slots.MCUConfig
	c   *smp.Client
}

// updateMCU takes step i's MCU from the phase the journal says to a decision: a success, or
// a failure naming the MCU and why. An error is no decision.
func (a *Agent) updateMCU(ctx context.Context, i int, st *StepState) (*StepOutcome, error) {
	cfg := a.o.Layout.Config.MCU(st.Class)
	if cfg == nil {
		return a.mcuOutcome(st, fmt.Errorf("%w: no MCU of class %s is configured any more", ErrSlotClass, st.Class)), nil
	}
	open := a.o.OpenMCU
	if open == nil {
		open = DialMCU
	}
	c, err := open(ctx, cfg)
	if err != nil {
		return a.mcuOutcome(st, fmt.Errorf("%w: %s: %w", ErrMCUUnreachable, cfg.Name, err)), nil
	}
	defer c.Close()
	run := &mcuRun{a: a, i: i, st: st, cfg: cfg, c: c}
	a.log.Info("updating an MCU", "mcu", cfg.Name, "phase", st.MCU.Phase, "file", st.FileName)
	err = run.steps(ctx)
	switch {
	case errors.Is(err, errMCUDone):
		a.log.Info("MCU updated and confirmed", "mcu", cfg.Name, "hash", fmt.Sprintf("%x", st.MCU.Hash))
		return &StepOutcome{ResultCode: adu.ResultApplySuccess}, nil
	case errors.Is(err, errJournal):
		return nil, err
	case ctx.Err() != nil && st.MCU.Phase == MCUPhaseUpload:
		return nil, ctx.Err()
	}
	return a.mcuOutcome(st, fmt.Errorf("MCU %s: %w", cfg.Name, err)), nil
}

// mcuOutcome is a failed MCU step's outcome, its extended result code naming the MCU.
func (a *Agent) mcuOutcome(st *StepState, cause error) *StepOutcome {
	rc, erc := ResultFor(cause)
	if isMCUCode(erc) {
		erc += adu.ExtendedResultCode(st.MCU.Index & 0xF)
	}
	a.log.Warn("MCU update failed", "mcu", st.MCU.Name, "erc", erc.String(), "err", cause)
	return &StepOutcome{ResultCode: rc, ExtendedResultCode: erc, Details: cause.Error()}
}

// errMCUDone ends an MCU's phases: it runs the step's image, confirmed.
var errMCUDone = errors.New("agent: the MCU runs the image, confirmed")

// steps runs the phases until the MCU is done or fails.
//
// Only the upload heeds ctx's cancel: once an image is marked for test, the MCU is taken to
// a decision (each request bounded by its timeouts) so that no MCU is left on trial.
func (r *mcuRun) steps(ctx context.Context) error {
	for {
		var err error
		phase := r.st.MCU.Phase
		if phase != MCUPhaseUpload {
			ctx = context.WithoutCancel(ctx)
		}
		switch phase {
		case MCUPhaseUpload:
			err = r.upload(ctx)
		case MCUPhaseTest:
			err = r.test(ctx)
		case MCUPhaseReset:
			err = r.reset(ctx)
		case MCUPhaseCheck:
			err = r.check(ctx)
		case MCUPhaseRevert:
			err = r.revert(ctx)
		default:
			err = fmt.Errorf("%w: unknown MCU phase %q", ErrBadManifest, r.st.MCU.Phase)
		}
		if err != nil {
			return err
		}
	}
}

// next records the next phase.
func (r *mcuRun) next(phase string, fn func(*MCUStep)) error {
	set := func(m *MCUStep) {
		m.Phase = phase
		if fn != nil {
			fn(m)
		}
	}
	if err := r.a.saveMCU(r.i, set); err != nil {
		return err
	}
	set(r.st.MCU)
	return nil
}

// image returns the MCU's list and the entry of the step's image in it (nil: not there).
func (r *mcuRun) image(ctx context.Context) ([]smp.SlotState, *smp.SlotState, error) {
	list, err := r.c.ImageState(ctx)
	if err != nil {
		return nil, nil, unreachable(err)
	}
	if len(r.st.MCU.Hash) == 0 {
		return list, nil, nil
	}
	return list, smp.FindImage(list, r.st.MCU.Hash), nil
}

// unreachable marks an SMP error that says the MCU does not answer.
func unreachable(err error) error {
	if errors.Is(err, smp.ErrTimeout) || errors.Is(err, smp.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrMCUUnreachable, err)
	}
	return fmt.Errorf("%w: %w", ErrMCUUpload, err)
}

// active is the running entry of list.
func active(list []smp.SlotState) *smp.SlotState {
	for i := range list {
		if list[i].Active {
			return &list[i]
		}
	}
	return nil
}

// upload streams the verified image into the MCU's secondary slot (the install pipeline:
// download, file hash, MCUboot hash and signature, the caller's checks, the MCU's writer),
// after deciding an image the MCU runs on trial (a reset: MCUboot reverts it).
func (r *mcuRun) upload(ctx context.Context) error {
	if p := r.st.Progress; p.Done && p.Info != nil && len(p.Info.ImageHash) > 0 {
		// Streamed and verified before a power cut took the next phase's save.
		return r.next(MCUPhaseTest, func(m *MCUStep) { m.Hash = p.Info.ImageHash })
	}
	list, _, err := r.image(ctx)
	if err != nil {
		return err
	}
	if run := active(list); run != nil && !run.Confirmed {
		r.a.log.Warn("the MCU runs an image on trial that nobody decided: resetting it (MCUboot reverts it)", "mcu", r.cfg.Name, "version", run.Version)
		if list, err = r.resetAndWait(ctx); err != nil {
			return err
		}
	}
	running := ""
	if run := active(list); run != nil {
		running = run.Version
	}
	rec, err := r.stream(ctx, running)
	if errors.Is(err, smp.ErrMismatch) {
		// The MCU's upload slot holds another image under this one's sha (its upload state
		// outlived a swap): erase it and send the whole image.
		r.a.log.Warn("the MCU's upload slot does not match its upload state: erasing it", "mcu", r.cfg.Name)
		if err := r.c.Erase(ctx, 1); err != nil {
			return unreachable(err)
		}
		rec, err = r.stream(ctx, running)
	}
	if err != nil {
		return err
	}
	if rec.Info == nil || len(rec.Info.ImageHash) == 0 {
		return fmt.Errorf("%w: the image has no hash TLV for the MCU to name it by", ErrImage)
	}
	return r.next(MCUPhaseTest, func(m *MCUStep) { m.Hash = rec.Info.ImageHash })
}

// stream runs the install pipeline into the MCU: the image checked like any other (its
// keys, compatibility, floor) and not older than what the MCU runs (unless allowed). A
// stream that finds the MCU behind it (it lost its upload) goes again: the MCU's writer skips
// what it holds.
func (r *mcuRun) stream(ctx context.Context, running string) (install.Record, error) {
	a, st := r.a, r.st
	in := a.installer(st.Class)
	if kr := a.o.MCUKeyrings[st.Class]; kr != nil {
		in.Keyring = kr
	}
	in.NoReadBack = true // the MCU checks the image's SHA-256 itself (the upload's "match")
	check := in.Check
	in.Check = func(info ImageInfo) error {
		if err := check(info); err != nil {
			return err
		}
		if !a.o.AllowDowngrade && running != "" && info.Version != "" && CompareVersions(info.Version, running) < 0 {
			return fmt.Errorf("%w: image version %s is older than the %s MCU %s runs", ErrDowngrade, info.Version, running, r.cfg.Name)
		}
		return nil
	}
	in.Save = func(p install.Record) error { return a.saveProgress(p, stepProgress(r.i)) }
	var rec install.Record
	var err error
	for range 3 {
		target := a.o.Layout.MCUTarget(r.cfg, &mcuLink{ctx: ctx, c: r.c, size: st.Source.Size, sha: st.Source.SHA256})
		rec, err = in.Install(ctx, st.Source, target, nil)
		if !errors.Is(err, slots.ErrMCUBehind) {
			break
		}
		a.log.Warn("the MCU lost its upload; streaming again (what it holds is skipped)", "mcu", r.cfg.Name, "err", err)
	}
	st.Progress = rec
	return rec, mcuUploadError(err)
}

// mcuUploadError says what an upload's error is about: an MCU that does not answer, or one
// that does not take the image (its writer failed: a refusal, a stall, a lost upload, its
// copy not matching); the image's own faults (signature, size, version) stay as they are.
func mcuUploadError(err error) error {
	switch {
	case err == nil, errors.Is(err, errJournal):
		return err
	case errors.Is(err, smp.ErrTimeout), errors.Is(err, smp.ErrClosed):
		return fmt.Errorf("%w: %w", ErrMCUUnreachable, err)
	case errors.Is(err, install.ErrSlot) && !errors.Is(err, slots.ErrTooLarge), errors.Is(err, smp.ErrDevice), errors.Is(err, smp.ErrReply):
		return fmt.Errorf("%w: %w", ErrMCUUpload, err)
	}
	return err
}

// mcuLink is slots.MCULink over an SMP client, for one image.
type mcuLink struct {
	ctx  context.Context
	c    *smp.Client
	size int64
	sha  []byte
}

func (l *mcuLink) Upload(off int64, data []byte) (int, int64, error) {
	return l.c.UploadFrame(l.ctx, off, l.size, l.sha, data)
}

// test marks the uploaded image for test, unless the MCU is past that already.
func (r *mcuRun) test(ctx context.Context) error {
	_, img, err := r.image(ctx)
	switch {
	case err != nil:
		return err
	case img == nil:
		return fmt.Errorf("%w: the MCU does not list the uploaded image", ErrMCUUpload)
	case img.Active && img.Confirmed:
		return errMCUDone
	case img.Active:
		return r.next(MCUPhaseCheck, nil)
	case !img.Pending:
		if _, err := r.c.Test(ctx, r.st.MCU.Hash); err != nil {
			return fmt.Errorf("marking the image for test: %w", unreachable(err))
		}
	}
	return r.next(MCUPhaseReset, nil)
}

// reset resets the MCU into the image marked for test and waits for it to run it.
func (r *mcuRun) reset(ctx context.Context) error {
	img, err := r.resetWhen(ctx, func(i *smp.SlotState) bool { return i.Pending && !i.Active })
	if err != nil {
		return err
	}
	switch {
	case img != nil && img.Active && img.Confirmed:
		return errMCUDone
	case img != nil && img.Active:
		return r.next(MCUPhaseCheck, nil)
	}
	return fmt.Errorf("%w: after the reset the MCU does not run the new image (MCUboot refused or reverted it)", ErrMCUBoot)
}

// resetWhen looks at the step's image on the MCU and, when cond holds of it, resets the MCU
// and waits for it; it returns the image's entry after that (nil: not listed).
func (r *mcuRun) resetWhen(ctx context.Context, cond func(*smp.SlotState) bool) (*smp.SlotState, error) {
	_, img, err := r.image(ctx)
	if err != nil || img == nil || !cond(img) {
		return img, err
	}
	list, err := r.resetAndWait(ctx)
	if err != nil {
		return nil, err
	}
	return smp.FindImage(list, r.st.MCU.Hash), nil
}

// resetAndWait resets the MCU (once: a second reset would revert a test image) and waits
// until it answers again, returning its list.
func (r *mcuRun) resetAndWait(ctx context.Context) ([]smp.SlotState, error) {
	if err := r.c.Reset(ctx); err != nil && !errors.Is(err, smp.ErrTimeout) {
		return nil, fmt.Errorf("resetting: %w", unreachable(err)) // a lost reply is no proof it did not reset
	}
	wctx, cancel := context.WithTimeout(ctx, r.cfg.BootTimeout)
	defer cancel()
	for {
		list, err := r.c.ImageState(wctx)
		if err == nil {
			return list, nil
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: no answer within %s after a reset: %w", ErrMCUUnreachable, r.cfg.BootTimeout, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check runs the MCU's health check on the image on trial, then confirms it; a failed check
// goes to the revert.
func (r *mcuRun) check(ctx context.Context) error {
	_, img, err := r.image(ctx)
	switch {
	case err != nil:
		return err
	case img == nil || !img.Active:
		return fmt.Errorf("%w: the MCU no longer runs the new image (it was reset and MCUboot reverted it)", ErrMCUBoot)
	case img.Confirmed:
		return errMCUDone
	}
	if why := r.healthy(ctx); why != "" {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.a.log.Warn("the MCU failed its health check: reverting", "mcu", r.cfg.Name, "why", why)
		return r.next(MCUPhaseRevert, func(m *MCUStep) { m.Why = why })
	}
	if _, err := r.c.Confirm(ctx, r.st.MCU.Hash); err != nil {
		why := "the confirm failed: " + err.Error()
		return r.next(MCUPhaseRevert, func(m *MCUStep) { m.Why = why })
	}
	return nil // the check phase again: the MCU's list tells whether the confirm took
}

// healthy runs the MCU's health check: its command, or an SMP echo. It returns why it failed
// ("" when healthy).
func (r *mcuRun) healthy(ctx context.Context) string {
	if len(r.cfg.HealthCommand) == 0 {
		const ping = "aduflash health check"
		got, err := r.c.Echo(ctx, ping)
		switch {
		case err != nil:
			return "SMP echo: " + err.Error()
		case got != ping:
			return fmt.Sprintf("SMP echo answered %q", got)
		}
		return ""
	}
	hc := health.Check{Name: "mcu " + r.cfg.Name, Command: r.cfg.HealthCommand, Env: []string{"ADUFLASH_MCU=" + r.cfg.Name}}
	rep, err := health.Run(ctx, []health.Check{hc}, r.a.o.HealthOptions)
	switch {
	case err != nil:
		return err.Error()
	case !rep.Healthy && len(rep.Results) > 0:
		return "health command " + checkSummary(rep.Results[0])
	case !rep.Healthy:
		return "health command did not run"
	}
	return ""
}

// revert resets the MCU once more so that MCUboot swaps the old image back.
func (r *mcuRun) revert(ctx context.Context) error {
	why := r.st.MCU.Why
	img, err := r.resetWhen(ctx, func(i *smp.SlotState) bool { return i.Active && !i.Confirmed })
	if err != nil {
		return fmt.Errorf("%w: %s; the revert: %w", ErrMCUHealth, why, err)
	}
	if img != nil && img.Active {
		return fmt.Errorf("%w: %s, and the MCU still runs the new image", ErrMCUNotReverted, why)
	}
	return fmt.Errorf("%w: %s; MCUboot reverted the image", ErrMCUHealth, why)
}

// LoadMCUKeyrings loads the keys of the MCUs that name their own (keyring, pub), by class.
func LoadMCUKeyrings(c *slots.Config) (map[string]*image.Keyring, error) {
	out := map[string]*image.Keyring{}
	for _, m := range c.MCUs {
		if m.Keyring == "" && len(m.Pub) == 0 {
			continue
		}
		kr, err := image.LoadTrust(m.Keyring, m.Pub)
		if err != nil {
			if image.Rejected(err) {
				return nil, fmt.Errorf("%w: slots.mcu %s keyring/pub: %w", ErrConfig, m.Name, err)
			}
			return nil, fmt.Errorf("slots.mcu %s keyring/pub: %w", m.Name, err)
		}
		out[m.Class] = kr
	}
	return out, nil
}

// finishMCUs records the outcome of a deployment whose MCU steps are all decided: each step's
// own result (an MCU's failure in its step; the others succeeded, or were installed already),
// the first failure as the deployment's. The update counts as installed (installedUpdateId)
// only when every MCU took it.
func (a *Agent) finishMCUs(dep *Deployment) error {
	active, err := a.activeBank()
	if err != nil {
		return err
	}
	out := &Outcome{WorkflowID: dep.WorkflowID, RetryTimestamp: dep.RetryTimestamp, Local: dep.Local, UpdateID: dep.UpdateID,
		Succeeded: true, ResultCode: adu.ResultApplySuccess, Bank: active, Finished: a.o.Now().UTC(), Steps: dep.stepOutcomes()}
	for _, s := range out.Steps {
		if s.ResultCode != adu.ResultApplySuccess && s.ResultCode != adu.ResultInstallSkippedUpdateAlreadyInstalled && out.Succeeded {
			out.Succeeded, out.ResultCode, out.ExtendedResultCode, out.Details = false, s.ResultCode, s.ExtendedResultCode, s.Details
		}
	}
	err = a.save(func(r *Record) {
		for _, s := range dep.Steps {
			if s.MCU == nil || s.Installed || s.MCU.Result == nil || s.MCU.Result.ResultCode != adu.ResultApplySuccess {
				continue
			}
			info := &MCUInfo{Criteria: s.Criteria, Hash: s.MCU.Hash,
				UpdateID: &MCUUpdate{Provider: dep.UpdateID.Provider, Name: dep.UpdateID.Name, Version: dep.UpdateID.Version}}
			if p := s.Progress.Info; p != nil {
				info.Version = p.Version
				r.raiseFloor(s.Class, p.SecurityCounter)
			}
			if r.MCUs == nil {
				r.MCUs = map[string]*MCUInfo{}
			}
			r.MCUs[s.Class] = info
		}
		if out.Succeeded {
			if r.Banks == nil {
				r.Banks = map[string]*BankInfo{}
			}
			if r.Banks[active] == nil {
				r.Banks[active] = &BankInfo{}
			}
			r.Banks[active].UpdateID = &dep.UpdateID
		}
		r.Last, r.Deployment = out, nil
	})
	if err != nil {
		return err
	}
	a.syncFloors()
	if !out.Succeeded {
		a.log.Warn("deployment failed", "workflow", dep.WorkflowID, "update", dep.UpdateID.String(), "erc", out.ExtendedResultCode.String(), "err", out.Details)
	}
	return nil
}

// stepOutcomes are the results of the manifest's steps: a step fails with the first of its
// entries (a child update's steps) that failed, is skipped when every entry was installed
// already, and succeeded otherwise.
func (d *Deployment) stepOutcomes() []StepOutcome {
	out := make([]StepOutcome, d.manifestSteps())
	installed, failed := make([]bool, len(out)), make([]bool, len(out))
	for i := range installed {
		installed[i] = true
	}
	for _, s := range d.Steps {
		installed[s.Step] = installed[s.Step] && s.Installed
		if r := s.MCU; r != nil && r.Result != nil && r.Result.ResultCode != adu.ResultApplySuccess && !failed[s.Step] {
			out[s.Step], failed[s.Step] = *r.Result, true
		}
	}
	for i := range out {
		switch {
		case failed[i]:
		case installed[i]:
			out[i].ResultCode = adu.ResultInstallSkippedUpdateAlreadyInstalled
		default:
			out[i].ResultCode = adu.ResultApplySuccess
		}
	}
	return out
}

// hasMCUs tells whether the deployment has MCU steps to run.
func (d *Deployment) hasMCUs() bool {
	for _, s := range d.Steps {
		if s.MCU != nil && !s.Installed {
			return true
		}
	}
	return false
}
