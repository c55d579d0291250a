package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/slots"
)

// maxManifestFile bounds a detached or child manifest or a root-key package fetched into
// memory.
const maxManifestFile = 1 << 20

// handlerProperties are the step's handlerProperties this handler reads.
type handlerProperties struct {
	InstalledCriteria string `json:"installedCriteria"`
	SlotClass         string `json:"slotClass"`
}

// deploy runs one deployment of the service in the order of the embedded agents:
// authenticate the manifest, then accept or reject the request (answer: the
// writable-property ack; a rejected request changes no state), and only once accepted report
// DeploymentInProgress, plan, install every step into the spare bank, mark it pending.
// resume is the journal's record of this deployment.
func (a *Agent) deploy(ctx context.Context, svc *adu.ServiceProperties, resume *Deployment, answer func(rejected error)) jobResult {
	wf := *svc.Workflow
	res := jobResult{wf: wf}
	a.log.Info("deployment", "workflow", wf.ID, "retryTimestamp", wf.RetryTimestamp, "resume", resume != nil)
	if err := a.authenticate(ctx, svc); err != nil {
		if ctx.Err() != nil {
			res.outcome, res.err = a.fail(wf, adu.UpdateID{}, 0, ctx.Err())
			return res
		}
		a.log.Warn("deployment rejected: the manifest is not authentic", "workflow", wf.ID, "err", err)
		answer(err)
		res.rejected = true
		return res
	}
	answer(nil)
	a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateDeploymentInProgress),
		Workflow:          &adu.Workflow{Action: adu.ActionProcessDeployment, ID: wf.ID, RetryTimestamp: wf.RetryTimestamp},
		LastInstallResult: &adu.InstallResult{ResultCode: adu.ResultSuccess, NullStepResults: true}})

	m, err := a.loadManifest(ctx, svc)
	if err != nil {
		res.outcome, res.err = a.fail(wf, adu.UpdateID{}, 0, err)
		return res
	}
	dep, installed, err := a.plan(ctx, wf, m, svc)
	if err != nil {
		res.outcome, res.err = a.fail(wf, m.UpdateID, len(m.Steps), err)
		return res
	}
	if installed {
		a.log.Info("update already installed", "update", m.UpdateID.String())
		out := &Outcome{WorkflowID: wf.ID, RetryTimestamp: wf.RetryTimestamp, UpdateID: m.UpdateID, Succeeded: true,
			ResultCode: adu.ResultApplySuccess, Bank: dep.From, Finished: a.o.Now().UTC()}
		for range m.Steps {
			out.Steps = append(out.Steps, StepOutcome{ResultCode: adu.ResultInstallSkippedUpdateAlreadyInstalled})
		}
		res.outcome = out
		res.err = a.save(func(r *Record) { r.Last = out })
		return res
	}
	if resume != nil && resume.Bank == dep.Bank && resume.UpdateID == dep.UpdateID && len(resume.Steps) == len(dep.Steps) {
		for i := range dep.Steps {
			if resume.Steps[i].Step == dep.Steps[i].Step && sameChild(resume.Steps[i].Child, dep.Steps[i].Child) &&
				resume.Steps[i].Slot == dep.Steps[i].Slot && resume.Steps[i].Source.Size == dep.Steps[i].Source.Size &&
				bytes.Equal(resume.Steps[i].Source.SHA256, dep.Steps[i].Source.SHA256) {
				dep.Steps[i].Progress = resume.Steps[i].Progress
			}
		}
		dep.resumeCopies(resume)
		dep.Started = resume.Started
	}
	if dep.skipBank() {
		return a.deployMCUs(ctx, dep, res)
	}
	if err := a.save(func(r *Record) { r.Deployment = dep }); err != nil {
		res.err = err
		return res
	}
	if err := a.installBank(ctx, dep, false); err != nil {
		if errors.Is(err, errJournal) {
			res.err = err
			return res
		}
		res.outcome, res.err = a.fail(wf, m.UpdateID, len(m.Steps), err)
		return res
	}
	if err := a.markPending(dep.Bank); err != nil {
		res.outcome, res.err = a.fail(wf, m.UpdateID, len(m.Steps), err)
		return res
	}
	res.reboot = true
	return res
}

var errJournal = errors.New("agent: journal")

// installBank writes every step's file into the spare bank, then fills the slots that no step
// writes from the running bank's: once it returns nil, every slot of the bank that the
// deployment writes or copies is verified, and the bank may be marked pending. A dry run
// checks all of it as it would go, writing nothing.
func (a *Agent) installBank(ctx context.Context, dep *Deployment, dryRun bool) error {
	if err := a.installSteps(ctx, dep, dryRun); err != nil {
		return err
	}
	return a.copySlots(ctx, dep, dryRun)
}

// installSteps writes every step's file into its slot, in order, saving progress in the
// journal; a dry run checks every file as installing it would, writing nothing.
func (a *Agent) installSteps(ctx context.Context, dep *Deployment, dryRun bool) error {
	for i := range dep.Steps {
		st := &dep.Steps[i]
		if st.Progress.Done || st.MCU != nil {
			continue // written and read back before a restart; an MCU's step comes after the bank's
		}
		if err := a.installStep(ctx, i, st, dryRun); err != nil {
			return fmt.Errorf("%s (%s → %s): %w", st.label(), st.FileName, st.Slot, err)
		}
		a.log.Info("slot written and verified", "slot", st.Slot, "format", st.Progress.Format, "downloaded", st.Progress.Downloaded,
			"written", st.Progress.Stats.BytesWritten, "skipped", st.Progress.Stats.BytesSkipped, "dry_run", dryRun)
	}
	return nil
}

// installStep writes step i's file into its slot, continuing from the journal's resume
// record, and saves every resume point in the journal. A dry run writes neither.
func (a *Agent) installStep(ctx context.Context, i int, st *StepState, dryRun bool) error {
	if st.Source.Size < 0 {
		return fmt.Errorf("%w: negative size %d", ErrBadManifest, st.Source.Size)
	}
	slot, err := a.o.Layout.Slot(st.Slot)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSlot, err)
	}
	target, err := a.o.Layout.Prepare(slot)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrSlot, slot.Name, err)
	}
	in := a.installer(st.Class)
	var resume *install.Record
	switch {
	case dryRun:
		in.DryRun = true
	default:
		in.Save = func(p install.Record) error { return a.saveProgress(p, stepProgress(i)) }
		if st.Progress.Cursor != nil {
			p := st.Progress
			a.loadHeader(&p)
			resume = &p
		}
	}
	src := st.Source
	ad, done, why := a.adaptiveSource(ctx, st.Adaptive, st.Class)
	defer done()
	if why != "" {
		a.log.Warn("adaptive download not possible; downloading the whole file", "file", st.FileName, "why", why)
	}
	src.Adaptive = ad
	if ad != nil && !dryRun && a.o.AdaptiveCache > 0 {
		fc := newFrameCache(a.fsys(), a.o.StateDir, ad.Index.HeaderSHA256, int64(a.o.AdaptiveCache))
		ad.Cache = fc
		defer func() {
			if ctx.Err() != nil {
				return // the agent stops: the install goes on when it starts again
			}
			if err := fc.clear(); err != nil {
				a.log.Warn("the adaptive install's kept ranges could not be removed", "dir", fc.dir, "err", err)
			}
		}()
	}
	a.log.Info("installing", "step", st.label(), "file", st.FileName, "slot", st.Slot, "size", st.Source.Size,
		"resume_at", st.Progress.Download.Offset, "adaptive", ad != nil, "dry_run", dryRun)
	st.Progress, err = in.Install(ctx, src, target, resume)
	if rec := st.Progress.Adaptive; rec != nil {
		a.log.Info("adaptive download", "file", st.FileName, "size", st.Source.Size, "fetched", rec.Fetched, "reused", rec.Reused,
			"from", heldNames(ad), "requests", rec.Requests, "planned", rec.Planned, "found", rec.Found, "cached", rec.Cached,
			"cache_error", rec.CacheError, "fallback", rec.Fallback)
	}
	return err
}

// heldNames names what an adaptive install took chunks from besides the target slot.
func heldNames(ad *install.Adaptive) string {
	if ad == nil {
		return ""
	}
	var names []string
	for _, h := range ad.Held {
		names = append(names, h.Name)
	}
	return strings.Join(names, ", ")
}

// saveProgress records a resume record in the journal (its image header apart), where at
// picks it in the deployment: a step's or a copy's.
func (a *Agent) saveProgress(p install.Record, at func(*Deployment) *install.Record) error {
	if err := a.saveHeader(&p); err != nil {
		return fmt.Errorf("%w: %w", errJournal, err)
	}
	if err := a.save(func(r *Record) {
		if r.Deployment == nil {
			return
		}
		if rec := at(r.Deployment); rec != nil {
			*rec = p
		}
	}); err != nil {
		return fmt.Errorf("%w: %w", errJournal, err)
	}
	return nil
}

// stepProgress picks step i's resume record in a deployment.
func stepProgress(i int) func(*Deployment) *install.Record {
	return func(d *Deployment) *install.Record {
		if i < len(d.Steps) {
			return &d.Steps[i].Progress
		}
		return nil
	}
}

// headerRecord is the header journal: the signed aduimg header of the image being written.
type headerRecord struct {
	SHA256 []byte `json:"sha256"`
	Header []byte `json:"header"`
}

// saveHeader stores p's image header in its own journal file when it is not there yet, and
// leaves only its hash in p (the progress record is saved at every resume point; the header
// of a 1 GiB image is 50 KB).
func (a *Agent) saveHeader(p *install.Record) error {
	if len(p.Header) == 0 {
		return nil
	}
	sum := sha256.Sum256(p.Header)
	p.HeaderSHA256 = sum[:]
	if bytes.Equal(a.savedHeader, sum[:]) {
		return nil
	}
	if err := a.hj.Save(headerRecord{SHA256: sum[:], Header: p.Header}); err != nil {
		return err
	}
	a.savedHeader = sum[:]
	return nil
}

// loadHeader fills p.Header from the header journal when it holds the header p names.
func (a *Agent) loadHeader(p *install.Record) {
	if len(p.HeaderSHA256) == 0 || len(p.Header) > 0 {
		return
	}
	var hr headerRecord
	if found, err := a.hj.Load(&hr); err != nil || !found {
		return
	}
	if sum := sha256.Sum256(hr.Header); bytes.Equal(sum[:], p.HeaderSHA256) && bytes.Equal(hr.SHA256, p.HeaderSHA256) {
		p.Header = hr.Header
		a.savedHeader = hr.SHA256
	}
}

// markPending records the pending phase, then makes the bootloader try the bank.
func (a *Agent) markPending(bank string) error {
	if err := a.save(func(r *Record) { r.Deployment.Phase = PhasePending }); err != nil {
		return fmt.Errorf("%w: %w", errJournal, err)
	}
	if err := a.o.Bootloader.MarkPending(bootloader.Bank(bank)); err != nil {
		// The bank is not pending: the deployment failed before the point of no return.
		return fmt.Errorf("%w: marking bank %s pending: %w", ErrBootloader, bank, err)
	}
	if err := a.save(func(r *Record) { r.Deployment.PendingMarked = true }); err != nil {
		return fmt.Errorf("%w: %w", errJournal, err)
	}
	return nil
}

// checkImage refuses an image for another device, or older than what runs.
func (a *Agent) checkImage(class string, info ImageInfo) error {
	if err := a.checkCompatibility(info.Compatibility); err != nil {
		return err
	}
	if err := a.checkFloor(class, info); err != nil {
		return err
	}
	var running string
	active, _ := a.activeBank()
	a.view(func(r *Record) {
		if b := a.bank(r, active); b != nil {
			running = b.Versions[class]
		}
	})
	if !a.o.AllowDowngrade && info.Version != "" && running != "" && CompareVersions(info.Version, running) < 0 {
		return fmt.Errorf("%w: image version %s is older than the running %s (%s)", ErrDowngrade, info.Version, running, class)
	}
	return nil
}

// deviceProperty returns the device's value of a compatibility property.
func (a *Agent) deviceProperty(name string) (string, bool) {
	switch strings.ToLower(name) {
	case "manufacturer":
		return a.o.Manufacturer, true
	case "model":
		return a.o.Model, true
	}
	for _, p := range a.o.Properties {
		if strings.EqualFold(p.Name, name) {
			return p.Value, true
		}
	}
	return "", false
}

// checkCompatibility checks an image's compatibility map: every property it names must
// have that value on this device.
func (a *Agent) checkCompatibility(compat map[string]string) error {
	for k, v := range compat {
		dv, ok := a.deviceProperty(k)
		if !ok || !strings.EqualFold(dv, v) {
			return fmt.Errorf("%w: the image needs %s=%q, the device has %q", ErrIncompatible, k, v, dv)
		}
	}
	return nil
}

// plan checks the manifest against the device and turns its steps, and the steps of the
// child updates its reference steps name (fetched here), into slot writes. installed is
// true when every step's installedCriteria is what the running bank holds.
func (a *Agent) plan(ctx context.Context, wf adu.Workflow, m *adu.Manifest, svc *adu.ServiceProperties) (*Deployment, bool, error) {
	if err := a.checkManifestCompatible(m); err != nil {
		return nil, false, err
	}
	if len(m.Steps) == 0 {
		return nil, false, fmt.Errorf("%w: the manifest has no steps", ErrBadManifest)
	}
	steps, err := a.inlineSteps(ctx, m, svc)
	if err != nil {
		return nil, false, err
	}
	active, err := a.activeBank()
	if err != nil {
		return nil, false, err
	}
	spare, err := a.spareBank(active)
	if err != nil {
		return nil, false, err
	}
	dep := &Deployment{WorkflowID: wf.ID, RetryTimestamp: wf.RetryTimestamp, UpdateID: m.UpdateID, Bank: spare, From: active,
		Phase: PhaseInstall, Started: a.o.Now().UTC()}
	var running *BankInfo
	mcus := map[string]*MCUInfo{}
	a.view(func(r *Record) {
		if b := a.bank(r, active); b != nil {
			c := *b
			running = &c
		}
		for class, m := range r.MCUs {
			c := *m
			mcus[class] = &c
		}
	})
	installed := true
	seen := map[string]bool{}
	for _, ps := range steps {
		st, err := a.planStep(ps, svc, spare, running, mcus, seen)
		if err != nil {
			return nil, false, err
		}
		installed = installed && st.Installed
		dep.Steps = append(dep.Steps, st)
	}
	if !dep.skipBank() {
		// The bank is written whole: a step whose class it holds already is written too.
		for i := range dep.Steps {
			if dep.Steps[i].MCU == nil {
				dep.Steps[i].Installed = false
			}
		}
		if dep.Copies, err = a.planCopies(active, spare, seen); err != nil {
			return nil, false, err
		}
	}
	return dep, installed, nil
}

// checkManifestCompatible refuses a manifest none of whose compatibility sets (if it has any)
// matches this device.
func (a *Agent) checkManifestCompatible(m *adu.Manifest) error {
	if len(m.Compatibility) == 0 {
		return nil
	}
	for _, c := range m.Compatibility {
		if a.checkCompatibility(c) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: none of the manifest's %d compatibility sets matches this device", ErrIncompatible, len(m.Compatibility))
}

// planStep checks one inline step (handler, properties, its one file and URL, its slot class
// not written twice: seen) and makes its state: into the spare bank's slot of the class, or
// into the attached MCU of that class; Installed when the running bank (or the MCU) already
// holds its installedCriteria.
func (a *Agent) planStep(ps plannedStep, svc *adu.ServiceProperties, spare string, running *BankInfo, mcus map[string]*MCUInfo, seen map[string]bool) (StepState, error) {
	s, at := ps.step, ps.at.label()
	if !strings.EqualFold(s.Handler, HandlerImage) {
		return StepState{}, fmt.Errorf("%w: %s wants %q; this agent runs %q", ErrUnsupportedHandler, at, s.Handler, HandlerImage)
	}
	var hp handlerProperties
	if len(s.HandlerProperties) > 0 {
		if err := json.Unmarshal(s.HandlerProperties, &hp); err != nil {
			return StepState{}, fmt.Errorf("%w: %s handlerProperties: %v", ErrBadManifest, at, err)
		}
	}
	if len(s.Files) != 1 {
		return StepState{}, fmt.Errorf("%w: %s has %d files; %s takes exactly one image", ErrBadManifest, at, len(s.Files), HandlerImage)
	}
	class := hp.SlotClass
	if class == "" {
		classes := a.classes()
		if len(classes) != 1 {
			return StepState{}, fmt.Errorf("%w: %s has no handlerProperties.slotClass and the device has %d slot classes", ErrBadManifest, at, len(classes))
		}
		class = classes[0]
	}
	if seen[class] {
		return StepState{}, fmt.Errorf("%w: two steps write slot class %s", ErrBadManifest, class)
	}
	seen[class] = true
	fid := s.Files[0]
	f := ps.files[fid]
	url := svc.FileURLs[fid]
	if url == "" {
		return StepState{}, fmt.Errorf("%w: file %s (%s)", ErrMissingFile, fid, f.FileName)
	}
	sum := fileSHA256(f.Hashes)
	if sum == nil {
		return StepState{}, fmt.Errorf("%w: file %s has no sha256 hash", ErrBadManifest, f.FileName)
	}
	st := StepState{Step: ps.at.Step, Child: ps.at.Child, Class: class, FileID: fid,
		FileName: f.FileName, Criteria: hp.InstalledCriteria, Source: Source{URL: url, Size: f.SizeInBytes, SHA256: sum},
		Adaptive: adaptiveFiles(f, svc.FileURLs)}
	if mcu := a.o.Layout.Config.MCU(class); mcu != nil {
		st.Slot, st.MCU = mcu.Name, &MCUStep{Name: mcu.Name, Index: a.mcuIndex(class)}
		st.Installed = hp.InstalledCriteria != "" && mcus[class] != nil && mcus[class].Criteria == hp.InstalledCriteria
	} else {
		slot, err := a.spareSlot(spare, class)
		if err != nil {
			return StepState{}, fmt.Errorf("%w: %s: slot class %q in bank %s: %w", ErrSlotClass, at, class, spare, err)
		}
		st.Slot = slot.Name
		st.Installed = hp.InstalledCriteria != "" && running != nil && running.Criteria[class] == hp.InstalledCriteria
	}
	return st, nil
}

// skipBank tells whether the deployment leaves the gateway's banks alone: it has no bank
// step, or the running bank holds every one of them (a retry that only an MCU needs).
func (d *Deployment) skipBank() bool {
	for _, s := range d.Steps {
		if s.MCU == nil && !s.Installed {
			return false
		}
	}
	return true
}

// classes returns the slot classes of the banks (a shared class is none of them).
func (a *Agent) classes() []string { return a.o.Layout.Config.BankedClasses() }

// spareSlot returns the spare bank's slot of class. A shared class has none: the running
// bank uses its one slot, which no update writes.
func (a *Agent) spareSlot(spare, class string) (*slots.Slot, error) {
	if a.o.Layout.Config.Spare(class) == slots.SpareShared {
		return nil, fmt.Errorf("class %s is shared by every bank (slots.class.%s.spare = %q): no update writes it", class, class, slots.SpareShared)
	}
	return a.o.Layout.Slot(spare + "/" + class)
}

// fail records a failed or cancelled deployment and returns its outcome.
func (a *Agent) fail(wf adu.Workflow, uid adu.UpdateID, steps int, cause error) (*Outcome, error) {
	out := a.failure(wf.ID, wf.RetryTimestamp, false, uid, steps, cause)
	if out.ResultCode == adu.ResultFailureCancelled {
		out.Details = "cancelled"
		for i := range out.Steps {
			out.Steps[i].Details = "cancelled"
		}
		a.log.Info("deployment cancelled", "workflow", wf.ID)
	} else {
		a.log.Warn("deployment failed", "workflow", wf.ID, "erc", out.ExtendedResultCode.String(), "err", cause)
	}
	err := a.save(func(r *Record) { r.Last, r.Deployment = out, nil })
	return out, err
}

// authenticate checks the manifest signature (after updating the root-key package on
// interface ;2): whether the request comes from the service at all.
func (a *Agent) authenticate(ctx context.Context, svc *adu.ServiceProperties) error {
	if svc.UpdateManifest == "" || svc.UpdateManifestSignature == "" {
		return fmt.Errorf("%w: updateManifest or updateManifestSignature missing", ErrBadManifest)
	}
	opts := adu.VerifyOptions{Roots: a.o.Roots, NoBuiltinRoots: a.o.NoBuiltinRoots}
	if a.iface == adu.InterfaceV2 {
		pkg, err := a.rootKeyPackage(ctx, svc.RootKeyPackageURL)
		if err != nil {
			return err
		}
		opts.Package = pkg
	}
	_, err := adu.Verify([]byte(svc.UpdateManifest), svc.UpdateManifestSignature, opts)
	return err
}

// loadManifest parses the authenticated manifest, fetching the full manifest of a detached
// one.
func (a *Agent) loadManifest(ctx context.Context, svc *adu.ServiceProperties) (*adu.Manifest, error) {
	m, err := adu.ParseManifest([]byte(svc.UpdateManifest))
	if err != nil {
		return nil, err
	}
	if m.IsDetached() {
		data, err := a.fetchManifestFile(ctx, m, svc, m.DetachedManifestFileID, "detached manifest")
		if err != nil {
			return nil, err
		}
		full, err := adu.ParseDetachedManifestFile(data)
		if err != nil {
			return nil, fmt.Errorf("%w: detached manifest: %w", ErrBadManifest, err)
		}
		m2, err := adu.ParseManifest(full)
		if err != nil {
			return nil, fmt.Errorf("%w: detached manifest: %w", ErrBadManifest, err)
		}
		if m2.UpdateID != m.UpdateID {
			return nil, fmt.Errorf("%w: the detached manifest is for %s, the signed one for %s", ErrBadManifest, m2.UpdateID, m.UpdateID)
		}
		m = m2
	}
	return m, nil
}

// fetchSmall downloads a small file into memory, checking size and hash when given.
func (a *Agent) fetchSmall(ctx context.Context, url string, size int64, sum []byte) ([]byte, error) {
	if size <= 0 || size > maxManifestFile {
		size = maxManifestFile
		sum = nil
	}
	var buf bytes.Buffer
	hc := a.o.HTTP
	if sum == nil {
		// Unknown size: one plain GET, bounded.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDownload, err)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDownload, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("%w: %w", ErrDownload, &download.StatusError{StatusCode: resp.StatusCode, Status: resp.Status})
		}
		if _, err := io.Copy(&buf, io.LimitReader(resp.Body, maxManifestFile+1)); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrDownload, err)
		}
		if buf.Len() > maxManifestFile {
			return nil, fmt.Errorf("%w: %w: more than %d bytes", ErrDownload, download.ErrTooLong, maxManifestFile)
		}
		return buf.Bytes(), nil
	}
	retry := a.o.Retry
	if retry.Attempts == 0 {
		retry.Attempts = 3
	}
	if _, err := download.Fetch(ctx, download.Request{URL: url, Size: size, SHA256: sum, Client: hc, Retry: retry, StallTimeout: a.o.StallTimeout}, &buf); err != nil {
		if errors.Is(err, download.ErrHashMismatch) {
			return nil, fmt.Errorf("%w: %w", ErrFileHash, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrDownload, err)
	}
	return buf.Bytes(), nil
}

// rootKeyPackage fetches, validates and stores the root-key package (spec §5.5). A package
// that cannot be fetched falls back to the stored one; one that fails validation fails the
// deployment.
func (a *Agent) rootKeyPackage(ctx context.Context, url string) (*adu.RootKeyPackage, error) {
	roots := a.trustedRoots()
	stored := func() (*adu.RootKeyPackage, error) {
		var raw json.RawMessage
		found, err := a.rkj.Load(&raw)
		if err != nil || !found {
			return nil, err
		}
		p, err := adu.ParseRootKeyPackage(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: stored package: %w", ErrRootKeyPackage, err)
		}
		if err := p.Validate(roots); err != nil {
			return nil, fmt.Errorf("%w: stored package: %w", ErrRootKeyPackage, err)
		}
		return p, nil
	}
	if url == "" {
		return stored()
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	data, err := a.fetchSmall(fctx, url, 0, nil)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.log.Warn("root-key package not fetched; using the stored one", "url", url, "err", err)
		return stored()
	}
	p, err := adu.ParseRootKeyPackage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRootKeyPackage, err)
	}
	if err := p.Validate(roots); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRootKeyPackage, err)
	}
	if p.IsTest && !a.o.AllowTestRootKeyPackage {
		return nil, fmt.Errorf("%w: a test package on a production device", ErrRootKeyPackage)
	}
	if old, err := stored(); err == nil && old != nil && old.Version > p.Version {
		return nil, fmt.Errorf("%w: version %d is older than the stored %d", ErrRootKeyPackage, p.Version, old.Version)
	}
	if err := a.rkj.Save(json.RawMessage(data)); err != nil {
		a.log.Warn("storing the root-key package", "err", err)
	}
	return p, nil
}

// trustedRoots are the roots the root-key package must be signed by.
func (a *Agent) trustedRoots() []adu.RootKey {
	var roots []adu.RootKey
	if !a.o.NoBuiltinRoots {
		roots = append(roots, adu.BuiltinRootKeys()...)
	}
	return append(roots, a.o.Roots...)
}

// CompareVersions compares two version strings part by part: runs of digits numerically,
// other runs as text ("1.10" > "1.9", "2.0.1" > "2.0"). It returns -1, 0 or 1.
func CompareVersions(x, y string) int {
	px, py := versionParts(x), versionParts(y)
	for i := 0; i < len(px) || i < len(py); i++ {
		var a, b string
		if i < len(px) {
			a = px[i]
		}
		if i < len(py) {
			b = py[i]
		}
		if c := comparePart(a, b); c != 0 {
			return c
		}
	}
	return 0
}

func versionParts(s string) []string {
	var parts []string
	cur := ""
	digit := false
	for _, r := range s {
		if r == '.' || r == '-' || r == '+' || r == '_' {
			if cur != "" {
				parts = append(parts, cur)
			}
			cur = ""
			continue
		}
		d := unicode.IsDigit(r)
		if cur != "" && d != digit {
			parts = append(parts, cur)
			cur = ""
		}
		cur += string(r)
		digit = d
	}
	if cur != "" {
		parts = append(parts, cur)
	}
	return parts
}

func comparePart(a, b string) int {
	an, aerr := strconv.ParseUint(a, 10, 64)
	bn, berr := strconv.ParseUint(b, 10, 64)
	switch {
	case aerr == nil && berr == nil:
		switch {
		case an < bn:
			return -1
		case an > bn:
			return 1
		}
		return 0
	case a == "":
		return -1
	case b == "":
		return 1
	}
	return strings.Compare(a, b)
}
