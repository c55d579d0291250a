package agent

import (
	"time"

	"github.com/aduflash/aduflash/adu"
)

// StateVersion is the version of the Record layout in the journal.
const StateVersion = 1

// Phases of a deployment.
const (
	// PhaseInstall: the files are being downloaded into the spare bank's slots.
	PhaseInstall = "install"
	// PhasePending: every slot is written and verified; the bank is (being) marked pending
	// and the device reboots into it.
	PhasePending = "pending"
)

// Record is everything the agent keeps across reboots, in one journal file replaced
// atomically: what each bank holds, the anti-rollback floor, the last finished deployment
// and the deployment in progress.
type Record struct {
	Version int `json:"version"`
	// Banks: what the agent installed in each bank (absent: not known, e.g. factory image).
	Banks map[string]*BankInfo `json:"banks,omitempty"`
	// MinSecurityCounter is the lowest aduimg security counter still accepted: the
	// highest counter of a confirmed image.
	MinSecurityCounter uint64 `json:"min_security_counter,omitempty"`
	// Last is the last deployment that finished (success, failure or cancel).
	Last *Outcome `json:"last,omitempty"`
	// Deployment is the deployment in progress, if any.
	Deployment *Deployment `json:"deployment,omitempty"`
}

// BankInfo is what one bank holds.
type BankInfo struct {
	UpdateID *adu.UpdateID `json:"update_id,omitempty"`
	// Criteria maps slot class → the installedCriteria of the step that wrote it.
	Criteria map[string]string `json:"installed_criteria,omitempty"`
	// Versions maps slot class → the image version written.
	Versions map[string]string `json:"versions,omitempty"`
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
	Started time.Time   `json:"started"`
}

// StepState is one step of a deployment: the file it writes and how far it got.
type StepState struct {
	Class    string   `json:"class"`
	Slot     string   `json:"slot"`
	FileID   string   `json:"file_id,omitempty"`
	FileName string   `json:"file_name,omitempty"`
	Criteria string   `json:"installed_criteria,omitempty"`
	Source   Source   `json:"source"`
	Progress Progress `json:"progress"`
}
