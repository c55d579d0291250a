package hub

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aduflash/aduflash/adu"
)

// DeviceState is a device's result in a deployment, as the portal shows it.
type DeviceState string

// Device states.
const (
	DeviceInProgress DeviceState = "InProgress"
	DeviceSucceeded  DeviceState = "Succeeded"
	DeviceFailed     DeviceState = "Failed"
	DeviceCancelled  DeviceState = "Cancelled"
)

// Deployment is an update deployed to the devices of a group. Like an
// Azure Device Update deployment it follows its group: a device that joins
// the group after the deployment was made (registered later, or whose
// reported deviceProperties arrive or change later) while it follows no
// active deployment is added to Devices and gets the deployment (see
// Deploy).
type Deployment struct {
	// ID is also the workflow id the devices get.
	ID       string       `json:"id"`
	UpdateID adu.UpdateID `json:"updateId"`
	// Group: the deviceProperties every targeted device reported (all must match).
	Group map[string]string `json:"group"`
	// Devices targeted (at Deploy, or joined since), sorted.
	Devices     []string  `json:"devices"`
	CreatedAt   time.Time `json:"createdAt"`
	Cancelled   bool      `json:"cancelled"`
	CancelledAt time.Time `json:"cancelledAt,omitzero"`
	// RetryTimestamp is the latest retry's retryTimestamp ("" if never retried).
	RetryTimestamp string `json:"retryTimestamp,omitempty"`
	// FileURLs is the fileUrls sent (all files of the update and of its child updates).
	FileURLs map[string]string `json:"fileUrls"`
}

// DeviceStatus is one device's result in a deployment.
type DeviceStatus struct {
	DeviceID string      `json:"deviceId"`
	State    DeviceState `json:"state"`
	// AgentState is the last agent.state the device reported for this deployment (nil: none yet).
	AgentState *int `json:"agentState,omitempty"`
	// Started: the device reported state 6 (DeploymentInProgress) for this deployment's
	// workflow since it was deployed or last retried.
	Started bool `json:"started"`
	// ResultCode, ExtendedResultCodes (comma-separated %08X, root code first, as interface
	// ;2 reports them; interface ;1's integer is converted) and ResultDetails are the
	// lastInstallResult of the report that decided State (zero until then).
	ResultCode          int    `json:"resultCode"`
	ExtendedResultCodes string `json:"extendedResultCodes,omitempty"`
	ResultDetails       string `json:"resultDetails,omitempty"`
	// InstalledUpdateID is the installedUpdateId the device reported last (compact JSON text).
	InstalledUpdateID string `json:"installedUpdateId,omitempty"`
	// RetryTimestamp is the retryTimestamp this device was last sent ("" if never retried).
	RetryTimestamp string `json:"retryTimestamp,omitempty"`
	// SupersededBy is the deployment that replaced this one on the device (State Cancelled).
	SupersededBy string `json:"supersededBy,omitempty"`
	// Removed: the device was removed from the hub while it followed this deployment; a
	// result still InProgress became Cancelled, a final one stays.
	Removed   bool      `json:"removed,omitempty"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// DeploymentStatus is a deployment with its per-device results and counts.
type DeploymentStatus struct {
	Deployment
	Results []DeviceStatus `json:"results"` // in the order of Devices (sorted by id)
	Counts  DeviceCounts   `json:"counts"`
}

// DeviceCounts counts a deployment's devices by state.
type DeviceCounts struct {
	InProgress int `json:"inProgress"`
	Succeeded  int `json:"succeeded"`
	Failed     int `json:"failed"`
	Cancelled  int `json:"cancelled"`
}

type depRecord struct {
	d    Deployment
	devs map[string]*DeviceStatus
	seq  uint64
	save saver
}

type storedDeployment struct {
	Deployment Deployment               `json:"deployment"`
	Devices    map[string]*DeviceStatus `json:"devices"`
}

func sortRecords(rs []*depRecord) {
	sort.Slice(rs, func(i, j int) bool {
		if !rs[i].d.CreatedAt.Equal(rs[j].d.CreatedAt) {
			return rs[i].d.CreatedAt.Before(rs[j].d.CreatedAt)
		}
		return rs[i].d.ID < rs[j].d.ID
	})
}

func (r *depRecord) status() DeploymentStatus {
	st := DeploymentStatus{Deployment: r.d}
	st.Group = maps.Clone(r.d.Group)
	st.Devices = slices.Clone(r.d.Devices)
	st.FileURLs = maps.Clone(r.d.FileURLs)
	for _, id := range r.d.Devices {
		ds := *r.devs[id]
		if ds.AgentState != nil {
			v := *ds.AgentState
			ds.AgentState = &v
		}
		st.Results = append(st.Results, ds)
		switch ds.State {
		case DeviceInProgress:
			st.Counts.InProgress++
		case DeviceSucceeded:
			st.Counts.Succeeded++
		case DeviceFailed:
			st.Counts.Failed++
		case DeviceCancelled:
			st.Counts.Cancelled++
		}
	}
	return st
}

// snapshotLocked returns what persist needs; called with Service.mu held.
func (s *Service) snapshotLocked(r *depRecord) (seq uint64, data []byte, err error) {
	r.seq++
	data, err = marshal(storedDeployment{Deployment: r.d, Devices: r.devs})
	return r.seq, data, err
}

func (s *Service) persist(r *depRecord, seq uint64, data []byte, err error) error {
	if err != nil {
		return err
	}
	return r.save.save(seq, filepath.Join(s.deploymentsDir(), fileName(r.d.ID)+".json"), data)
}

type pendingSave struct {
	r    *depRecord
	seq  uint64
	data []byte
	err  error
}

func (s *Service) persistAll(ps []pendingSave) error {
	var errs []error
	for _, p := range ps {
		errs = append(errs, s.persist(p.r, p.seq, p.data, p.err))
	}
	return errors.Join(errs...)
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Deploy deploys an imported, deployable update to every registered device
// whose reported deviceUpdate.agent.deviceProperties contain all of group
// (nil or empty: no restriction) and one of the update's compatibility sets
// (names and values compared exactly). Each device's desired
// deviceUpdate.service becomes {workflow{action 3, id}, updateManifest,
// updateManifestSignature, fileUrls[, rootKeyPackageUrl]} (members of an
// earlier service object that are not part of it are nulled in the patch,
// since the service rewrites the whole object). The workflow id is the
// new deployment's id. A device that followed another deployment is moved
// to this one (its result there becomes Cancelled, SupersededBy set). When
// some devices could not be written to, the deployment is returned with the
// error.
//
// The deployment then follows its group, as Azure Device Update's do: when a
// device that follows no active deployment (never targeted, or its
// deployment was cancelled) reports deviceUpdate.agent.deviceProperties —
// registered after the Deploy, a first startup report, or properties that
// changed so that it now matches — it joins the newest non-cancelled
// deployment whose group and one of whose update's compatibility sets its
// properties contain. It is added to that deployment's Devices and follows
// it; if its reported installedUpdateId already is the update's it is
// Succeeded at once and nothing is written, otherwise it is InProgress and
// gets the same desired service object (with the deployment's latest
// retryTimestamp if it was retried). A device that newest deployment
// already lists (in any state) is not added again, and an older deployment
// is not tried instead. Joins are written in the background, ordered with
// Deploy, Cancel and Retry; Close waits for them.
func (s *Service) Deploy(updateID adu.UpdateID, group map[string]string) (*Deployment, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.opts.FileBaseURL == "" {
		return nil, fmt.Errorf("%w: ServiceOptions.FileBaseURL is needed to deploy", ErrInvalidOption)
	}
	s.mu.Lock()
	u := s.updates[updateID]
	if u == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrUnknownUpdate, updateID)
	}
	if !u.Deployable {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %s (isDeployable false)", ErrNotDeployable, updateID)
	}
	urls := map[string]string{}
	for _, up := range append([]*Update{u}, s.childrenLocked(u)...) {
		for _, f := range up.Files {
			urls[f.ID] = s.fileURLLocked(f)
		}
	}
	s.mu.Unlock()

	var targets []string
	installed := map[string]string{} // what each target runs now
	for _, id := range s.hub.Devices() {
		tw, err := s.hub.Twin(id)
		if err != nil {
			continue
		}
		a := parseAgent(tw)
		if a.props == nil || !matchAll(a.props, group) {
			continue
		}
		for _, c := range u.Compatibility {
			if matchAll(a.props, c) {
				targets = append(targets, id)
				installed[id] = a.installed
				break
			}
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: %s, group %v", ErrNoMatchingDevices, updateID, group)
	}

	now := s.opts.Now().UTC()
	r := &depRecord{
		d: Deployment{
			ID: newUUID(), UpdateID: updateID, Group: maps.Clone(group), Devices: targets,
			CreatedAt: now, FileURLs: urls,
		},
		devs: map[string]*DeviceStatus{},
	}
	if r.d.Group == nil {
		r.d.Group = map[string]string{}
	}
	var saves []pendingSave
	s.mu.Lock()
	for _, id := range targets {
		r.devs[id] = &DeviceStatus{DeviceID: id, State: DeviceInProgress, InstalledUpdateID: installed[id], UpdatedAt: now}
		if old := s.deps[s.current[id]]; old != nil {
			if ds := old.devs[id]; ds != nil {
				ds.SupersededBy = r.d.ID
				if ds.State == DeviceInProgress {
					ds.State = DeviceCancelled
				}
				ds.UpdatedAt = now
				seq, data, err := s.snapshotLocked(old)
				saves = append(saves, pendingSave{old, seq, data, err})
			}
		}
		s.current[id] = r.d.ID
	}
	s.deps[r.d.ID] = r
	seq, data, err := s.snapshotLocked(r)
	saves = append(saves, pendingSave{r, seq, data, err})
	s.mu.Unlock()
	if err := s.persistAll(saves); err != nil {
		return nil, err
	}

	err = s.sendService(targets, s.serviceObject(u, r.d.ID, "", urls))
	s.opts.Logger.Info("hub: deployed", "deployment", r.d.ID, "update", updateID.String(), "devices", len(targets))
	d := r.d
	d.Devices = slices.Clone(d.Devices)
	return &d, err
}

func (s *Service) childrenLocked(u *Update) []*Update {
	var out []*Update
	for _, c := range u.References {
		if cu := s.updates[c]; cu != nil {
			out = append(out, cu)
		}
	}
	return out
}

func (s *Service) fileURLLocked(f UpdateFile) string {
	return s.fileURL(s.opts.FileBaseURL, f)
}

func (s *Service) fileURL(base string, f UpdateFile) string {
	return strings.TrimRight(base, "/") + "/" + f.ID + "/" + url.PathEscape(f.FileName)
}

func matchAll(props, want map[string]string) bool {
	for k, v := range want {
		if pv, ok := props[k]; !ok || pv != v {
			return false
		}
	}
	return true
}

// serviceObject is the desired deviceUpdate.service of a deployment.
func (s *Service) serviceObject(u *Update, workflowID, retryTS string, urls map[string]string) map[string]any {
	wf := map[string]any{"action": int(adu.ActionProcessDeployment), "id": workflowID}
	if retryTS != "" {
		wf["retryTimestamp"] = retryTS
	}
	fu := make(map[string]any, len(urls))
	for k, v := range urls {
		fu[k] = v
	}
	svc := map[string]any{
		"workflow":                wf,
		"updateManifest":          u.Manifest,
		"updateManifestSignature": u.Signature,
		"fileUrls":                fu,
	}
	if s.opts.RootKeyPackageURL != "" {
		svc["rootKeyPackageUrl"] = s.opts.RootKeyPackageURL
	}
	return svc
}

// cancelObject is the desired deviceUpdate.service that cancels.
func (s *Service) cancelObject() map[string]any {
	svc := map[string]any{
		"workflow":                map[string]any{"action": int(adu.ActionCancel), "id": adu.NoDeployment},
		"updateManifest":          nil,
		"updateManifestSignature": nil,
		"fileUrls":                nil,
	}
	if s.opts.RootKeyPackageURL != "" {
		svc["rootKeyPackageUrl"] = s.opts.RootKeyPackageURL
	}
	return svc
}

// writeService replaces the device's desired deviceUpdate.service with svc.
// Called with sendMu held.
func (s *Service) writeService(deviceID string, svc map[string]any) error {
	old, err := s.hub.deviceUpdateMember(deviceID, "desired", "service")
	if err != nil {
		return err
	}
	patch := map[string]any{"deviceUpdate": map[string]any{
		"__t":     "c",
		"service": replacePatch(old, svc),
	}}
	b, err := marshal(patch)
	if err != nil {
		return err
	}
	v, err := s.hub.SetDesired(deviceID, b)
	if err != nil {
		return err
	}
	wf, _ := svc["workflow"].(map[string]any)
	args := []any{"device", deviceID, "action", wf["action"], "workflow", wf["id"], "desiredVersion", v, "connected", s.hub.Connected(deviceID)}
	if ts, ok := wf["retryTimestamp"]; ok {
		args = append(args, "retryTimestamp", ts)
	}
	s.opts.Logger.Info("hub: wrote the device's desired deviceUpdate.service", args...)
	return nil
}

// replacePatch is the merge patch that turns old into new: members of old
// missing from new are nulled, objects present in both are patched member by
// member, everything else is set.
func replacePatch(old, new map[string]any) map[string]any {
	out := make(map[string]any, len(old)+len(new))
	for k := range old {
		if _, ok := new[k]; !ok {
			out[k] = nil
		}
	}
	for k, nv := range new {
		nm, nIsMap := nv.(map[string]any)
		om, oIsMap := old[k].(map[string]any)
		if nIsMap && oIsMap {
			out[k] = replacePatch(om, nm)
		} else {
			out[k] = nv
		}
	}
	return out
}

// Cancel cancels a deployment like the service: every device still
// following it gets the desired service {workflow{255,"nodeployment"},
// updateManifest, updateManifestSignature and fileUrls null}, and devices
// InProgress become Cancelled (Succeeded and Failed stay).
func (s *Service) Cancel(deploymentID string) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	var devs []string
	err := s.changeActive(deploymentID, func(r *depRecord) error {
		now := s.opts.Now().UTC()
		r.d.Cancelled, r.d.CancelledAt = true, now
		for _, id := range r.d.Devices {
			if s.current[id] != deploymentID {
				continue
			}
			delete(s.current, id)
			devs = append(devs, id)
			if ds := r.devs[id]; ds.State == DeviceInProgress {
				ds.State, ds.UpdatedAt = DeviceCancelled, now
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.sendService(devs, s.cancelObject())
	s.opts.Logger.Info("hub: cancelled", "deployment", deploymentID, "devices", len(devs))
	return err
}

// changeActive applies change to the active deployment deploymentID with s.mu held and
// stores the deployment unless change fails. The caller holds s.sendMu, so that what it
// sends afterwards goes out in the order of the changes.
func (s *Service) changeActive(deploymentID string, change func(*depRecord) error) error {
	s.mu.Lock()
	r, err := s.activeLocked(deploymentID)
	if err == nil {
		err = change(r)
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	seq, data, err := s.snapshotLocked(r)
	s.mu.Unlock()
	return s.persist(r, seq, data, err)
}

// activeLocked returns the deployment that is not cancelled; s.mu is held.
func (s *Service) activeLocked(deploymentID string) (*depRecord, error) {
	r := s.deps[deploymentID]
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDeployment, deploymentID)
	}
	if r.d.Cancelled {
		return nil, fmt.Errorf("%w: %s", ErrDeploymentCancelled, deploymentID)
	}
	return r, nil
}

// sendService writes the desired service object svc to each device; it returns the failures,
// each naming its device.
func (s *Service) sendService(devs []string, svc map[string]any) error {
	var errs []error
	for _, id := range devs {
		if err := s.writeService(id, svc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// Retry retries the failed devices of a deployment, as the portal's "retry
// failed devices": each device whose result is Failed (and that still
// follows the deployment) gets the same service object with the same
// workflow id and a new workflow.retryTimestamp (RFC 3339 in UTC with
// fractional seconds, later than any before) and is InProgress again. It
// returns the devices retried.
func (s *Service) Retry(deploymentID string) ([]string, error) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	var (
		u    *Update
		devs []string
		tss  string
		urls map[string]string
	)
	err := s.changeActive(deploymentID, func(r *depRecord) error {
		if u = s.updates[r.d.UpdateID]; u == nil {
			return fmt.Errorf("%w: %s", ErrUnknownUpdate, r.d.UpdateID)
		}
		for _, id := range r.d.Devices {
			if s.current[id] == deploymentID && r.devs[id].State == DeviceFailed {
				devs = append(devs, id)
			}
		}
		if len(devs) == 0 {
			return fmt.Errorf("%w: %s", ErrNoFailedDevices, deploymentID)
		}
		now := s.opts.Now().UTC()
		ts := now
		if prev, err := time.Parse(time.RFC3339Nano, r.d.RetryTimestamp); err == nil && !ts.After(prev) {
			ts = prev.Add(time.Microsecond)
		}
		tss = ts.Format(time.RFC3339Nano)
		r.d.RetryTimestamp = tss
		for _, id := range devs {
			ds := r.devs[id]
			*ds = DeviceStatus{DeviceID: id, State: DeviceInProgress, InstalledUpdateID: ds.InstalledUpdateID,
				AgentState: ds.AgentState, RetryTimestamp: tss, UpdatedAt: now}
		}
		urls = maps.Clone(r.d.FileURLs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = s.sendService(devs, s.serviceObject(u, deploymentID, tss, urls))
	s.opts.Logger.Info("hub: retried", "deployment", deploymentID, "devices", len(devs), "retryTimestamp", tss)
	return devs, err
}

// Status returns a deployment with its per-device results.
func (s *Service) Status(deploymentID string) (*DeploymentStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.deps[deploymentID]
	if r == nil {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDeployment, deploymentID)
	}
	st := r.status()
	return &st, nil
}

// Deployments returns every deployment with its results, oldest first.
func (s *Service) Deployments() []DeploymentStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := make([]*depRecord, 0, len(s.deps))
	for _, r := range s.deps {
		rs = append(rs, r)
	}
	sortRecords(rs)
	out := make([]DeploymentStatus, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.status())
	}
	return out
}

// CurrentDeployment returns the id of the deployment the device follows
// ("" if none: never targeted, cancelled).
func (s *Service) CurrentDeployment(deviceID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current[deviceID]
}

// agentView is what the service reads from a device's reported
// deviceUpdate.agent; members of the wrong type read as absent.
type agentView struct {
	props     map[string]string
	hasState  bool
	state     int
	hasWF     bool
	wfID      string
	wfRetry   string
	installed string
	result    *resultView
}

type resultView struct {
	code    int
	ercs    string
	details string
}

// parseAgent reads reported.deviceUpdate.agent of a full twin document.
func parseAgent(twin []byte) agentView {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(twin))
	dec.UseNumber()
	_ = dec.Decode(&doc)
	rep, _ := doc["reported"].(map[string]any)
	du, _ := rep["deviceUpdate"].(map[string]any)
	ag, _ := du["agent"].(map[string]any)
	return agentOf(ag)
}

func agentOf(ag map[string]any) agentView {
	var a agentView
	if ag == nil {
		return a
	}
	if dp, ok := ag["deviceProperties"].(map[string]any); ok {
		a.props = map[string]string{}
		for k, v := range dp {
			if sv, ok := v.(string); ok {
				a.props[k] = sv
			}
		}
	}
	if n, ok := intOf(ag["state"]); ok {
		a.hasState, a.state = true, int(n)
	}
	if wf, ok := ag["workflow"].(map[string]any); ok {
		a.hasWF = true
		a.wfID, _ = wf["id"].(string)
		a.wfRetry, _ = wf["retryTimestamp"].(string)
	}
	a.installed, _ = ag["installedUpdateId"].(string)
	if lr, ok := ag["lastInstallResult"].(map[string]any); ok {
		r := &resultView{}
		if n, ok := intOf(lr["resultCode"]); ok {
			r.code = int(n)
		}
		if s, ok := lr["extendedResultCodes"].(string); ok {
			r.ercs = s
		} else if n, ok := intOf(lr["extendedResultCode"]); ok {
			r.ercs = adu.FormatExtendedResultCodes([]adu.ExtendedResultCode{adu.ExtendedResultCode(uint32(n))})
		}
		r.details, _ = lr["resultDetails"].(string)
		a.result = r
	}
	return a
}

func intOf(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			f, ferr := n.Float64()
			if ferr != nil || f != float64(int64(f)) {
				return 0, false
			}
			i = int64(f)
		}
		return i, true
	case float64:
		if n != float64(int64(n)) {
			return 0, false
		}
		return int64(n), true
	}
	return 0, false
}

// onReported follows a device's reports (Hub.OnReported): only patches that
// carry deviceUpdate.agent's state, workflow or installedUpdateId count, so
// an ack or a startup report cannot revive an old result. A patch carrying
// deviceUpdate.agent.deviceProperties from a device that follows no active
// deployment starts a join (see Deploy).
func (s *Service) onReported(deviceID string, patch json.RawMessage) {
	var p struct {
		DeviceUpdate struct {
			Agent map[string]json.RawMessage `json:"agent"`
		} `json:"deviceUpdate"`
	}
	if json.Unmarshal(patch, &p) != nil || p.DeviceUpdate.Agent == nil {
		return
	}
	ag := p.DeviceUpdate.Agent
	if _, hasProps := ag["deviceProperties"]; hasProps {
		// After this report was applied to the deployment the device follows (if any): a
		// join must not make the report that caused it count in the deployment it joins.
		defer s.startJoin(deviceID)
	}
	// The report's own members: merged into the twin, members of older reports (or of the
	// other interface's form) could linger.
	rep := reportOf(patch)
	s.logReport(deviceID, rep)
	_, hasState := ag["state"]
	_, hasWF := ag["workflow"]
	_, hasInst := ag["installedUpdateId"]
	if !hasState && !hasWF && !hasInst {
		return
	}
	s.mu.Lock()
	r := s.deps[s.current[deviceID]]
	if r == nil {
		s.mu.Unlock()
		return
	}
	tw, err := s.hub.Twin(deviceID)
	if err != nil {
		s.mu.Unlock()
		return
	}
	u := s.updates[r.d.UpdateID]
	ds := r.devs[deviceID]
	if u == nil || ds == nil {
		s.mu.Unlock()
		return
	}
	was := ds.State
	if !s.evaluate(r, ds, parseAgent(tw), rep, u.UpdateID.InstalledUpdateID()) {
		s.mu.Unlock()
		return
	}
	now := *ds
	seq, data, serr := s.snapshotLocked(r)
	s.mu.Unlock()
	if now.State != was {
		s.opts.Logger.Info("hub: device result changed", "deployment", r.d.ID, "device", deviceID, "from", string(was), "to", string(now.State),
			"resultCode", now.ResultCode, "extendedResultCodes", now.ExtendedResultCodes, "resultDetails", now.ResultDetails)
	}
	if err := s.persist(r, seq, data, serr); err != nil {
		s.opts.Logger.Error("hub: storing the deployment failed", "deployment", r.d.ID, "err", err)
	}
}

// reportOf reads deviceUpdate.agent of a reported patch.
func reportOf(patch json.RawMessage) agentView {
	var pa map[string]any
	dec := json.NewDecoder(bytes.NewReader(patch))
	dec.UseNumber()
	if dec.Decode(&pa) != nil {
		return agentView{}
	}
	du, _ := pa["deviceUpdate"].(map[string]any)
	ag, _ := du["agent"].(map[string]any)
	return agentOf(ag)
}

// logReport logs what a device reported of its agent: at Info the state, workflow,
// installed update and result it carries, so that a person can follow a device.
func (s *Service) logReport(deviceID string, rep agentView) {
	args := []any{"device", deviceID}
	if rep.hasState {
		args = append(args, "state", rep.state)
	}
	if rep.hasWF {
		args = append(args, "workflow", rep.wfID)
		if rep.wfRetry != "" {
			args = append(args, "retryTimestamp", rep.wfRetry)
		}
	}
	if rep.installed != "" {
		args = append(args, "installedUpdateId", rep.installed)
	}
	if rep.result != nil {
		args = append(args, "resultCode", rep.result.code, "extendedResultCodes", rep.result.ercs, "resultDetails", rep.result.details)
	}
	if rep.props != nil {
		kv := make([]string, 0, len(rep.props))
		for k, v := range rep.props {
			kv = append(kv, k+"="+v)
		}
		sort.Strings(kv)
		args = append(args, "deviceProperties", strings.Join(kv, ","))
	}
	s.opts.Logger.Info("hub: device reported", args...)
}

// followsActiveLocked reports whether the device follows a deployment that
// is not cancelled. Called with s.mu held.
func (s *Service) followsActiveLocked(deviceID string) bool {
	r := s.deps[s.current[deviceID]]
	return r != nil && !r.d.Cancelled
}

// startJoin starts join for a device that reported deviceProperties and
// follows no active deployment. The join runs on its own goroutine: the
// caller is the device's connection goroutine (Hub.OnReported), which
// should not wait for sendMu (held by Deploy while it writes to devices)
// nor write to the device before its report is answered.
func (s *Service) startJoin(deviceID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.followsActiveLocked(deviceID) {
		return
	}
	s.joins.Go(func() { s.join(deviceID) })
}

// join adds a device that follows no active deployment to the newest
// non-cancelled deployment its reported deviceProperties match (group and
// one of the update's compatibility sets) and that does not list it yet,
// and writes it the deployment's desired service object unless it already
// reports the update installed (then it is Succeeded). Everything is
// decided again under sendMu, so that a Deploy, Cancel or Retry running
// meanwhile is taken into account.
func (s *Service) join(deviceID string) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	tw, err := s.hub.Twin(deviceID)
	if err != nil {
		return
	}
	a := parseAgent(tw)
	if a.props == nil {
		return
	}
	s.mu.Lock()
	if s.followsActiveLocked(deviceID) {
		s.mu.Unlock()
		return
	}
	var r *depRecord
	var u *Update
	// The newest deployment the device matches is its group's active one; when that one
	// was cancelled the group has none (an older deployment does not come back).
	for _, c := range s.deps {
		if !matchAll(a.props, c.d.Group) {
			continue
		}
		cu := s.updates[c.d.UpdateID]
		if cu == nil || !slices.ContainsFunc(cu.Compatibility, func(cm map[string]string) bool { return matchAll(a.props, cm) }) {
			continue
		}
		if r == nil || c.d.CreatedAt.After(r.d.CreatedAt) || (c.d.CreatedAt.Equal(r.d.CreatedAt) && c.d.ID > r.d.ID) {
			r, u = c, cu
		}
	}
	// A device the deployment lists is not added again, unless it was removed from the hub
	// since: registered anew, it is a new device.
	if r == nil || r.d.Cancelled || (r.devs[deviceID] != nil && !r.devs[deviceID].Removed) {
		s.mu.Unlock()
		return
	}
	now := s.opts.Now().UTC()
	ds := &DeviceStatus{DeviceID: deviceID, State: DeviceInProgress, RetryTimestamp: r.d.RetryTimestamp, InstalledUpdateID: a.installed, UpdatedAt: now}
	if a.installed == u.UpdateID.InstalledUpdateID() {
		// Already on the update: what the service shows, and nothing to send.
		ds.State, ds.RetryTimestamp = DeviceSucceeded, ""
		if a.hasState {
			v := a.state
			ds.AgentState = &v
		}
		if a.result != nil {
			ds.ResultCode, ds.ExtendedResultCodes, ds.ResultDetails = a.result.code, a.result.ercs, a.result.details
		}
	}
	if i, found := slices.BinarySearch(r.d.Devices, deviceID); !found {
		r.d.Devices = slices.Insert(r.d.Devices, i, deviceID)
	}
	r.devs[deviceID] = ds
	s.current[deviceID] = r.d.ID
	state, ts := ds.State, ds.RetryTimestamp
	urls := maps.Clone(r.d.FileURLs)
	seq, data, serr := s.snapshotLocked(r)
	s.mu.Unlock()
	if err := s.persist(r, seq, data, serr); err != nil {
		s.opts.Logger.Error("hub: storing the deployment failed", "deployment", r.d.ID, "device", deviceID, "err", err)
		return
	}
	s.opts.Logger.Info("hub: device joined a deployment", "deployment", r.d.ID, "device", deviceID, "state", string(state))
	if state != DeviceInProgress {
		return
	}
	if err := s.writeService(deviceID, s.serviceObject(u, r.d.ID, ts, urls)); err != nil {
		s.opts.Logger.Error("hub: writing the deployment to a joining device failed", "deployment", r.d.ID, "device", deviceID, "err", err)
	}
}

// evaluate applies one report to a device's result, as the service decides
// (spec §2.2, §6). tw is the device's reported agent after the report was
// merged, rep the report itself. Only reports for this deployment's workflow
// count (after a retry, with the retry's retryTimestamp when the device
// echoes one): state 6 ⇒ started; state 255 ⇒ Failed; state 0 ⇒ Succeeded
// when it is the deployment's success report (see successReport), else
// Failed after state 6. It reports whether ds changed. Called with s.mu held.
func (s *Service) evaluate(r *depRecord, ds *DeviceStatus, tw, rep agentView, installedID string) bool {
	if ds.State == DeviceCancelled || ds.State == DeviceSucceeded || ds.SupersededBy != "" || ds.Removed {
		return false
	}
	before := *ds
	if tw.hasState {
		v := tw.state
		if ds.AgentState == nil || *ds.AgentState != v {
			ds.AgentState = &v
		}
	}
	ds.InstalledUpdateID = tw.installed
	ours := tw.hasWF && tw.wfID == r.d.ID &&
		(ds.RetryTimestamp == "" || tw.wfRetry == "" || tw.wfRetry == ds.RetryTimestamp)
	setResult := func() {
		ds.ResultCode, ds.ExtendedResultCodes, ds.ResultDetails = 0, "", ""
		if rep.result != nil {
			ds.ResultCode, ds.ExtendedResultCodes, ds.ResultDetails = rep.result.code, rep.result.ercs, rep.result.details
		}
	}
	switch {
	case !tw.hasState || !ours:
	case tw.state == int(adu.StateDeploymentInProgress):
		ds.Started = true
		if ds.State == DeviceFailed {
			ds.State = DeviceInProgress
		}
	case tw.state == int(adu.StateFailed):
		if ds.State != DeviceFailed {
			ds.State = DeviceFailed
			setResult()
		}
	case tw.state == int(adu.StateIdle) && successReport(before, tw, rep, installedID):
		ds.State = DeviceSucceeded
		setResult()
	case tw.state == int(adu.StateIdle) && ds.Started:
		if ds.State != DeviceFailed {
			ds.State = DeviceFailed
			setResult()
		}
	}
	changed := before.State != ds.State || before.Started != ds.Started || before.InstalledUpdateID != ds.InstalledUpdateID ||
		(before.AgentState == nil) != (ds.AgentState == nil) ||
		(before.AgentState != nil && ds.AgentState != nil && *before.AgentState != *ds.AgentState)
	if changed {
		ds.UpdatedAt = s.opts.Now().UTC()
	}
	return changed
}

// successReport tells whether an Idle report for a deployment's workflow is its success
// report. Idle with the update's installedUpdateId is not enough: a device that rolls back to
// the update it already ran (a redeployment whose new bank failed its health check) reports
// just that, with a failing lastInstallResult. It is success when the device reports the
// update's installedUpdateId and either
//   - a lastInstallResult of 700 (Apply_Success) or 603 (already installed), as the Linux
//     agent, NetX Duo and aduagent report success; or
//   - no lastInstallResult, after state 6, where the device reported another
//     installedUpdateId before: the first report of an embedded (FreeRTOS middleware)
//     agent from its new image, which says nothing more (spec §6.2).
func successReport(before DeviceStatus, tw, rep agentView, installedID string) bool {
	if tw.installed != installedID {
		return false
	}
	if rep.result != nil {
		return rep.result.code == int(adu.ResultApplySuccess) || rep.result.code == int(adu.ResultInstallSkippedUpdateAlreadyInstalled)
	}
	return before.Started && before.InstalledUpdateID != installedID
}
