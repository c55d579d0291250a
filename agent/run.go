package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/iothub"
)

// job is a deployment running in its own goroutine.
type job struct {
	wf     adu.Workflow
	cancel context.CancelFunc
	done   chan jobResult
}

// jobResult is how a deployment ended: reboot (the bank is pending), rejected (not
// authentic: answered in the ack, nothing to report), or an outcome to report.
type jobResult struct {
	wf       adu.Workflow
	reboot   bool
	rejected bool
	outcome  *Outcome
	err      error // an error that stopped the job without an outcome (journal I/O)
}

// request is a service property to act on, with the desired $version that carried it
// (noAck: none to acknowledge, already acknowledged or absent).
type request struct {
	svc      *adu.ServiceProperties
	version  int64
	full     bool
	reported json.RawMessage
}

const noAck = -1

// answer acknowledges the request's $version: accepted (nil) or rejected with why.
func (a *Agent) answer(ctx context.Context, version int64, rejected error) {
	if version == noAck {
		return
	}
	ack := adu.Ack{Code: adu.AckAccepted, Version: version}
	if rejected != nil {
		ack.Code, ack.Description = adu.AckRejected, truncate(rejected.Error(), 256)
		if _, erc := ResultFor(rejected); !errors.Is(rejected, ErrBusy) && erc != adu.ERCNone {
			ack.Description = truncate(erc.String()+": "+rejected.Error(), 256)
		}
	}
	if patch, err := ack.Patch(); err == nil {
		a.send(ctx, patch)
	}
}

// Run is the daemon: it finishes what the last start left (Boot), then follows the
// service's desired properties on hub, runs deployments and reports their outcome. It
// returns ErrRebooting after asking for a reboot, or ctx's error.
func (a *Agent) Run(ctx context.Context, hub Hub) error {
	a.hub = hub
	if !a.booted {
		if err := a.Boot(ctx); err != nil {
			return err
		}
	}
	var cur *job
	var waiting *request // a deployment rejected while cur runs, taken up when cur ends
	var lastAck int64 = noAck
	diag := diagnosticsState{lastAck: noAck}
	defer func() { diag.job.stop() }()
	started := false
	tick := time.NewTicker(a.o.HeartbeatInterval)
	defer tick.Stop()
	beat := func() {
		if a.o.Heartbeat != nil {
			a.o.Heartbeat()
		}
	}
	beat()
	stopCur := func() {
		if cur != nil {
			cur.cancel()
			<-cur.done
			cur = nil
		}
	}
	defer stopCur()
	for {
		var doneCh chan jobResult
		if cur != nil {
			doneCh = cur.done
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			beat()
		case res := <-doneCh:
			cur = nil
			if err := a.jobEnded(ctx, res); err != nil {
				return err
			}
			if waiting != nil {
				next, w, err := a.onService(ctx, *waiting, nil)
				if err != nil {
					return err
				}
				cur, waiting = next, w
			}
		case ev, ok := <-hub.Desired():
			if !ok {
				return fmt.Errorf("the IoT Hub connection closed: %w", iothub.ErrClosed)
			}
			beat()
			doc := ev.Patch
			var reported json.RawMessage
			if ev.Full {
				doc, reported = ev.Twin.Desired, ev.Twin.Reported
			}
			a.onDiagnostics(ctx, doc, &diag)
			d, err := adu.ParseDesired(doc)
			if ev.Full && !started {
				started = true
				// With a deployment in the desired properties, its handling reports the state
				// (a bare Idle first would read as a failure to the service).
				idle := err == nil && (d.Service == nil || d.Service.Workflow == nil || d.Service.IsCancel())
				a.startupReport(ctx, idle)
			}
			if err != nil {
				a.malformed(ctx, ev, err)
				continue
			}
			if d.Service == nil {
				continue
			}
			req := request{svc: d.Service, version: noAck, full: ev.Full, reported: reported}
			if d.HasVersion && d.Version != lastAck {
				lastAck = d.Version
				req.version = d.Version
			}
			next, w, err := a.onService(ctx, req, cur)
			if err != nil {
				return err
			}
			cur, waiting = next, w
		}
	}
}

// onService acts on the service property; it returns the job that runs afterwards, and the
// request that waits for it to end (a deployment rejected because cur runs). Every request
// with a $version is answered: accepted, or rejected (a deployment that arrives while
// another is being installed, or whose manifest is not authentic) with no state reported.
func (a *Agent) onService(ctx context.Context, req request, cur *job) (*job, *request, error) {
	svc, full, reported := req.svc, req.full, req.reported
	wf := svc.Workflow
	if wf == nil || svc.IsCancel() || wf.Action != adu.ActionProcessDeployment {
		a.answer(ctx, req.version, nil)
	}
	if wf == nil {
		return cur, nil, nil
	}
	if svc.IsCancel() {
		if cur != nil {
			a.log.Info("cancel requested", "workflow", cur.wf.ID)
			cur.cancel()
			return cur, nil, nil // its end reports the cancel
		}
		if !(full && reportedIs(reported, func(ag *reportedAgent) bool { return ag.State != nil && *ag.State == 0 && ag.Workflow.Action == 255 })) &&
			!a.cancelIdleSent {
			a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateIdle), Workflow: &adu.Workflow{Action: adu.ActionCancel, ID: adu.NoDeployment}})
		}
		a.cancelIdleSent = true
		return nil, nil, nil
	}
	if wf.Action != adu.ActionProcessDeployment {
		a.log.Warn("ignoring an unsupported workflow action", "action", int(wf.Action), "workflow", wf.ID)
		return cur, nil, nil
	}
	a.cancelIdleSent = false
	if cur != nil {
		if cur.wf.ID == wf.ID && cur.wf.RetryTimestamp == wf.RetryTimestamp {
			a.answer(ctx, req.version, nil)
			return cur, nil, nil // the same deployment, delivered again
		}
		// Another deployment (a new id, or a retry) while one is being installed: rejected
		// with no state change; taken up when the running one ends without a reboot.
		a.log.Info("rejecting a deployment while another is being installed", "running", cur.wf.ID, "new", wf.ID, "retryTimestamp", wf.RetryTimestamp)
		a.answer(ctx, req.version, fmt.Errorf("%w: deployment %s is being installed", ErrBusy, cur.wf.ID))
		return cur, &req, nil
	}
	var last *Outcome
	var dep *Deployment
	a.view(func(r *Record) {
		if r.Last != nil {
			o := *r.Last
			last = &o
		}
		if r.Deployment != nil {
			d := *r.Deployment
			dep = &d
		}
	})
	if last != nil && !last.Local && last.WorkflowID == wf.ID && last.RetryTimestamp == wf.RetryTimestamp {
		// Finished before (this process or an earlier start): never run it again, but make
		// sure the service saw the outcome.
		a.answer(ctx, req.version, nil)
		if full && !a.outcomeReported(reported, last) {
			a.reportOutcome(ctx, last)
		}
		return nil, nil, nil
	}
	if dep != nil && (dep.Local || dep.WorkflowID != wf.ID || dep.RetryTimestamp != wf.RetryTimestamp || dep.Phase != PhaseInstall) {
		if (dep.Phase == PhasePending || dep.Phase == PhaseMCU) && !dep.Local && dep.WorkflowID == wf.ID {
			a.answer(ctx, req.version, nil)
			return nil, nil, nil // Boot finishes it
		}
		a.log.Info("dropping an unfinished deployment", "workflow", dep.WorkflowID, "phase", dep.Phase)
		dep = nil
	}
	jctx, cancel := context.WithCancel(ctx)
	j := &job{wf: *wf, cancel: cancel, done: make(chan jobResult, 1)}
	go func() {
		defer cancel()
		j.done <- a.deploy(jctx, svc, dep, func(rejected error) { a.answer(jctx, req.version, rejected) })
	}()
	return j, nil, nil
}

// jobEnded reports a finished deployment, or reboots into the pending bank.
func (a *Agent) jobEnded(ctx context.Context, res jobResult) error {
	switch {
	case res.reboot:
		a.reportBanks(ctx) // the bank pending: what a dashboard shows while the device reboots
		return a.reboot(ctx, "the update is written; booting it")
	case res.err != nil:
		return res.err
	case res.outcome != nil:
		a.reportOutcome(ctx, res.outcome)
	}
	return nil
}

// startupReport sends deviceProperties and compatPropertyNames (and deviceInformation for
// the non-contract models), with Idle and the installed update when idle is set and nothing
// is in progress.
func (a *Agent) startupReport(ctx context.Context, idle bool) {
	props := []adu.DeviceProperty{{Name: "manufacturer", Value: a.o.Manufacturer}, {Name: "model", Value: a.o.Model}}
	props = append(props, a.o.Properties...)
	contract := adu.ModelContractV2
	if a.iface == adu.InterfaceV2 {
		contract = adu.ModelContractV3
	}
	props = append(props, adu.DeviceProperty{Name: "contractModelId", Value: contract}, adu.DeviceProperty{Name: "aduVer", Value: a.o.AduVer})
	ap := &adu.AgentProperties{DeviceProperties: props, CompatPropertyNames: a.o.CompatPropertyNames}
	var busy bool
	a.view(func(r *Record) { busy = r.Deployment != nil })
	if idle && !busy {
		ap.State = statePtr(adu.StateIdle)
		ap.InstalledUpdateID = a.installedUpdateID()
	}
	a.report(ctx, ap)
	a.reportBanks(ctx)
	if a.o.ModelID == adu.ModelV2 || a.o.ModelID == adu.ModelV3 {
		di := a.o.DeviceInformation
		if di == nil {
			di = ReadDeviceInformation
		}
		info := di()
		if info.Manufacturer == "" {
			info.Manufacturer = a.o.Manufacturer
		}
		if info.Model == "" {
			info.Model = a.o.Model
		}
		if info.SWVersion == "" {
			a.view(func(r *Record) {
				if active, err := a.activeBank(); err == nil {
					if b := a.bank(r, active); b != nil && b.UpdateID != nil {
						info.SWVersion = b.UpdateID.Version
					}
				}
			})
		}
		if patch, err := info.Patch(); err == nil {
			a.send(ctx, patch)
		}
	}
}

// installedUpdateID is the update the running bank holds ("" when not known).
func (a *Agent) installedUpdateID() string {
	active, err := a.activeBank()
	if err != nil {
		return ""
	}
	var id string
	a.view(func(r *Record) {
		if b := a.bank(r, active); b != nil && b.UpdateID != nil {
			id = b.UpdateID.InstalledUpdateID()
		}
	})
	return id
}

// malformed handles a desired document that does not parse: it is acknowledged as
// rejected and, when it names a deployment, reported Failed then Idle.
func (a *Agent) malformed(ctx context.Context, ev iothub.DesiredUpdate, cause error) {
	a.log.Warn("malformed desired properties", "err", cause)
	if ev.Version > 0 {
		if patch, err := (adu.Ack{Code: adu.AckRejected, Version: ev.Version, Description: truncate(cause.Error(), 256)}).Patch(); err == nil {
			a.send(ctx, patch)
		}
	}
	out := a.failure("", "", false, adu.UpdateID{}, 0, fmt.Errorf("%w: %w", ErrBadManifest, cause))
	a.reportOutcome(ctx, out)
}

// reportOutcome sends the final report(s) of a deployment: success is Idle with the new
// installedUpdateId and 700; failure is Failed, then Idle with the old installedUpdateId;
// cancel is Idle with -1.
func (a *Agent) reportOutcome(ctx context.Context, o *Outcome) {
	if o.Local {
		return
	}
	var wf *adu.Workflow
	if o.WorkflowID != "" {
		wf = &adu.Workflow{Action: adu.ActionProcessDeployment, ID: o.WorkflowID, RetryTimestamp: o.RetryTimestamp}
	}
	res := &adu.InstallResult{ResultCode: o.ResultCode, ResultDetails: o.Details}
	if !o.Succeeded {
		res.ExtendedResultCodes = []adu.ExtendedResultCode{o.ExtendedResultCode}
	} else {
		res.ResultDetails = ""
	}
	for _, s := range o.Steps {
		sr := adu.InstallResult{ResultCode: s.ResultCode, ResultDetails: s.Details}
		if s.ExtendedResultCode != 0 || !o.Succeeded {
			sr.ExtendedResultCodes = []adu.ExtendedResultCode{s.ExtendedResultCode}
		}
		res.StepResults = append(res.StepResults, sr)
	}
	switch {
	case o.Succeeded:
		a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateIdle), Workflow: wf, InstalledUpdateID: o.UpdateID.InstalledUpdateID(), LastInstallResult: res})
	case o.ResultCode == adu.ResultFailureCancelled:
		a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateIdle), Workflow: wf, LastInstallResult: res})
	default:
		a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateFailed), Workflow: wf, LastInstallResult: res})
		a.report(ctx, &adu.AgentProperties{State: statePtr(adu.StateIdle), Workflow: wf, InstalledUpdateID: a.installedUpdateID(), LastInstallResult: res})
	}
}

// reportedAgent is the part of the reported deviceUpdate.agent the agent compares with.
type reportedAgent struct {
	State    *int `json:"state"`
	Workflow struct {
		Action int    `json:"action"`
		ID     string `json:"id"`
	} `json:"workflow"`
	InstalledUpdateID string `json:"installedUpdateId"`
	LastInstallResult struct {
		ResultCode *int `json:"resultCode"`
	} `json:"lastInstallResult"`
}

func reportedIs(reported json.RawMessage, pred func(*reportedAgent) bool) bool {
	var doc struct {
		DeviceUpdate struct {
			Agent reportedAgent `json:"agent"`
		} `json:"deviceUpdate"`
	}
	if len(reported) == 0 || json.Unmarshal(reported, &doc) != nil {
		return false
	}
	return pred(&doc.DeviceUpdate.Agent)
}

// outcomeReported tells whether the reported properties already show o's final state.
func (a *Agent) outcomeReported(reported json.RawMessage, o *Outcome) bool {
	return reportedIs(reported, func(ag *reportedAgent) bool {
		if ag.State == nil || *ag.State != int(adu.StateIdle) || ag.Workflow.ID != o.WorkflowID {
			return false
		}
		if o.Succeeded {
			return ag.InstalledUpdateID == o.UpdateID.InstalledUpdateID()
		}
		return ag.LastInstallResult.ResultCode != nil && *ag.LastInstallResult.ResultCode == int(o.ResultCode)
	})
}

// report sends an agent patch.
func (a *Agent) report(ctx context.Context, ap *adu.AgentProperties) {
	patch, err := ap.Patch(a.iface)
	if err != nil {
		a.log.Error("rendering a report", "err", err)
		return
	}
	a.send(ctx, patch)
}

// send delivers a reported patch, retrying a few times. A report that cannot be delivered
// is dropped: after the reconnect the full twin is compared with the journal and the final
// outcome sent again.
func (a *Agent) send(ctx context.Context, patch []byte) {
	if a.hub == nil {
		return
	}
	a.repMu.Lock()
	defer a.repMu.Unlock()
	var err error
	for i := 0; i < a.o.ReportAttempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(a.o.ReportBackoff):
			}
		}
		if _, err = a.hub.UpdateReported(ctx, patch); err == nil {
			a.log.Debug("reported", "patch", string(patch))
			return
		}
		if errors.Is(err, iothub.ErrClosed) || ctx.Err() != nil {
			break
		}
	}
	a.log.Warn("report not delivered", "err", err, "patch", truncate(string(patch), 300))
}

func statePtr(s adu.State) *adu.State { return &s }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
