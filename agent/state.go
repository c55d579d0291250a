package agent

import (
	"bytes"
	"fmt"
	"time"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/install"
)

// StateVersion is the version of the Record layout in the journal. Version 2 added
// StepState.Step and StepState.Child (reference steps); a version-1 record had one StepState
// per manifest step, which New carries over by setting Step to the entry's index. Version 3
// added SecurityFloors (per slot class, for aduimg and MCUboot images); New copies an
// earlier record's MinSecurityCounter into it for every configured class. Version 4 made a
// step's progress the install package's resume record (install.Record), which holds the
// download's state where version 3 had file_offset, file_hash, etag and last_modified of its
// own; New carries them over (legacyProgress), so an install started by an older agent
// resumes where it stopped. Version 5 added Deployment.Copies (the spare bank's slots filled
// from the running bank) and BankInfo.Sizes; nothing is carried over: a deployment an older
// agent started plans its copies when it resumes. Version 6 added MCU steps (StepState.MCU,
// StepState.Installed, PhaseMCU) and Record.MCUs; an earlier record has none.
const StateVersion = 6

// Phases of a deployment.
const (
	// PhaseInstall: the files are being downloaded into the spare bank's slots.
	PhaseInstall = "install"
	// PhasePending: every slot is written and verified; the bank is (being) marked pending
	// and the device reboots into it.
	PhasePending = "pending"
	// PhaseMCU: the gateway's bank is confirmed (or none was written); the attached MCUs
	// are being updated (mcu.go).
	PhaseMCU = "mcu"
)

// Record is everything the agent keeps across reboots, in one journal file replaced
// atomically: what each bank holds, the anti-rollback floor, the last finished deployment
// and the deployment in progress.
type Record struct {
	Version int `json:"version"`
	// Banks: what the agent installed in each bank (absent: not known, e.g. factory image).
	Banks map[string]*BankInfo `json:"banks,omitempty"`
	// SecurityFloors maps a slot class to the lowest image security counter still accepted
	// there (the aduimg header's, MCUboot's SEC_CNT TLV): the highest counter of a confirmed
	// image of that class. A bootloader that keeps floors (bootloader.FloorKeeper) holds a
	// copy where a wipe of the state folder does not reach it; the higher of the two is
	// enforced.
	SecurityFloors map[string]uint64 `json:"security_floors,omitempty"`
	// MinSecurityCounter is the single aduimg floor of records up to version 2, left as it
	// was read (an older agent still finds it); New copies it into SecurityFloors.
	MinSecurityCounter uint64 `json:"min_security_counter,omitempty"`
	// Last is the last deployment that finished (success, failure or cancel).
	Last *Outcome `json:"last,omitempty"`
	// Deployment is the deployment in progress, if any.
	Deployment *Deployment `json:"deployment,omitempty"`
	// LogCollection is the operationId of the last log collection that finished: the same
	// request delivered again (a reconnect, a restart) uploads nothing again.
	LogCollection string `json:"log_collection,omitempty"`
	// MCUs maps an attached MCU's class to what the agent installed on it.
	MCUs map[string]*MCUInfo `json:"mcus,omitempty"`
}

// BankInfo is what one bank holds.
type BankInfo struct {
	UpdateID *adu.UpdateID `json:"update_id,omitempty"`
	// Criteria maps slot class → the installedCriteria of the step that wrote it.
	Criteria map[string]string `json:"installed_criteria,omitempty"`
	// Versions maps slot class → the image version written.
	Versions map[string]string `json:"versions,omitempty"`
	// Sizes maps slot class → the bytes the agent put into the slot (an image's raw size, a
	// copy's size): how much a copy of it takes.
	Sizes map[string]int64 `json:"sizes,omitempty"`
}

// Outcome is a finished deployment.
type Outcome struct {
	WorkflowID     string         `json:"workflow_id,omitempty"`
	RetryTimestamp string         `json:"retry_timestamp,omitempty"`
	Local          bool           `json:"local,omitempty"` // aduagent install, not from the service
	UpdateID       adu.UpdateID   `json:"update_id"`
	Succeeded      bool           `json:"succeeded"`
	ResultCode     adu.ResultCode `json:"result_code"`
	// ExtendedResultCode is the root cause's code (0 on success).
	ExtendedResultCode adu.ExtendedResultCode `json:"extended_result_code"`
	Details            string                 `json:"details,omitempty"`
	Steps              []StepOutcome          `json:"steps,omitempty"`
	Bank               string                 `json:"bank,omitempty"`
	Finished           time.Time              `json:"finished"`
}

// StepOutcome is one step's result.
type StepOutcome struct {
	ResultCode         adu.ResultCode         `json:"result_code"`
	ExtendedResultCode adu.ExtendedResultCode `json:"extended_result_code"`
	Details            string                 `json:"details,omitempty"`
}

// Deployment is a deployment in progress.
type Deployment struct {
	WorkflowID     string       `json:"workflow_id,omitempty"`
	RetryTimestamp string       `json:"retry_timestamp,omitempty"`
	Local          bool         `json:"local,omitempty"`
	UpdateID       adu.UpdateID `json:"update_id"`
	Bank           string       `json:"bank"` // the bank being written
	From           string       `json:"from"` // the bank that ran when it started
	Phase          string       `json:"phase"`
	// PendingMarked: the bootloader transition to Bank succeeded.
	PendingMarked bool `json:"pending_marked,omitempty"`
	// Reboots counts reboots into the pending bank that did not come back in it.
	Reboots int         `json:"reboots,omitempty"`
	Steps   []StepState `json:"steps"`
	// Copies are the slots of Bank that no step writes, filled from the running bank's.
	Copies  []CopyState `json:"copies,omitempty"`
	Started time.Time   `json:"started"`
}

// StepState is one step of a deployment: the file it writes and how far it got. A
// reference step of the manifest is flattened into one StepState per inline step of its
// child update, in order, each with Child set.
type StepState struct {
	// Step is the index of the manifest step (of the deployed, parent, manifest) this entry
	// belongs to: its step_<Step> result is reported.
	Step int `json:"step"`
	// Child is set for an inline step of a child update.
	Child    *ChildStep `json:"child,omitempty"`
	Class    string     `json:"class"`
	Slot     string     `json:"slot"`
	FileID   string     `json:"file_id,omitempty"`
	FileName string     `json:"file_name,omitempty"`
	Criteria string     `json:"installed_criteria,omitempty"`
	Source   Source     `json:"source"`
	// Adaptive names the file's adaptive index and chunk store (downloadHandler
	// DownloadHandlerAdaptive); nil: the file is downloaded.
	Adaptive *AdaptiveFiles `json:"adaptive,omitempty"`
	// Progress is the install's resume record.
	Progress install.Record `json:"progress"`
	// MCU is set for a step that updates an attached MCU (Slot is the MCU's name).
	MCU *MCUStep `json:"mcu,omitempty"`
	// Installed: the slot or MCU held the step's installedCriteria before the deployment;
	// nothing is written, the step is reported as skipped.
	Installed bool `json:"installed,omitempty"`
}

// CopyState is a slot of the spare bank that no step of the deployment writes and whose class
// the config neither shares nor leaves alone (slots.class.NAME.spare = "copy", the default):
// it is filled with the running bank's slot of its class, so that the bank booted next is
// whole. It is no manifest step and has no step result of its own.
type CopyState struct {
	Class string `json:"class"`
	From  string `json:"from"` // the running bank's slot
	Slot  string `json:"slot"` // the spare bank's slot
	// Size is how many bytes are copied: what the agent put into From (BankInfo.Sizes), or,
	// where that is not known (a factory image), what install.CopySize decides when the copy
	// starts; 0 until then.
	Size int64 `json:"size,omitempty"`
	// Criteria and Version are what the running bank's BankInfo says of the class: the
	// spare bank holds the same once the copy is done.
	Criteria string `json:"installed_criteria,omitempty"`
	Version  string `json:"version,omitempty"`
	// Progress is the copy's resume record (install.FormatCopy).
	Progress install.Record `json:"progress"`
}

// ChildStep places a StepState in the child update of a reference step.
type ChildStep struct {
	// ManifestFileID is the reference step's detachedManifestFileId (a file of the parent).
	ManifestFileID string       `json:"manifest_file_id"`
	UpdateID       adu.UpdateID `json:"update_id"`
	// Step is the index in the child's steps.
	Step int `json:"step"`
}

// manifestSteps is the number of steps of the deployed manifest (a reference step counts
// once, however many steps its child has).
func (d *Deployment) manifestSteps() int {
	n := 0
	for _, s := range d.Steps {
		n = max(n, s.Step+1)
	}
	return n
}

// label names the step in messages: "step 1", or "step 1 (child step 0)".
func (s *StepState) label() string {
	if s.Child == nil {
		return fmt.Sprintf("step %d", s.Step)
	}
	return fmt.Sprintf("step %d (child %s step %d)", s.Step, s.Child.UpdateID, s.Child.Step)
}

// migrate brings a record of an earlier layout to StateVersion; classes are the configured
// slot classes, legacy the record read in the layout of version 3 and before.
func (r *Record) migrate(classes []string, legacy *legacyRecord) {
	if r.Version < 2 && r.Deployment != nil {
		for i := range r.Deployment.Steps {
			r.Deployment.Steps[i].Step = i
		}
	}
	if r.Version < 3 {
		for _, c := range classes {
			r.raiseFloor(c, r.MinSecurityCounter)
		}
	}
	if r.Version < 4 && r.Deployment != nil && legacy.Deployment != nil && len(legacy.Deployment.Steps) == len(r.Deployment.Steps) {
		for i := range r.Deployment.Steps {
			legacy.Deployment.Steps[i].Progress.carryOver(&r.Deployment.Steps[i])
		}
	}
	if r.Version < StateVersion {
		r.Version = StateVersion
	}
}

// legacyRecord is what a record of version 3 or before kept of a step's download in members
// of its own.
type legacyRecord struct {
	Deployment *struct {
		Steps []struct {
			Progress legacyProgress `json:"progress"`
		} `json:"steps"`
	} `json:"deployment"`
}

// legacyProgress is the download part of a step's progress up to version 3: where the
// download continued, the marshaled SHA-256 state of the file up to there (kept even for
// sources without a hash), and the validators.
type legacyProgress struct {
	FileOffset   int64  `json:"file_offset"`
	FileHash     []byte `json:"file_hash"`
	ETag         string `json:"etag"`
	LastModified string `json:"last_modified"`
}

// carryOver fills st's download state from p.
func (p legacyProgress) carryOver(st *StepState) {
	d := download.State{Size: st.Source.Size, Offset: p.FileOffset, ETag: p.ETag, LastModified: p.LastModified}
	if len(st.Source.SHA256) > 0 {
		d.SHA256, d.Hash = bytes.Clone(st.Source.SHA256), p.FileHash
	}
	st.Progress.Download = d
}

// raiseFloor raises the journal's floor of class to n.
func (r *Record) raiseFloor(class string, n uint64) {
	if n <= r.SecurityFloors[class] {
		return
	}
	if r.SecurityFloors == nil {
		r.SecurityFloors = map[string]uint64{}
	}
	r.SecurityFloors[class] = n
}
