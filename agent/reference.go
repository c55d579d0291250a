package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/aduflash/aduflash/adu"
)

// Reference steps (child updates), spec §3.3 and §3.5.
//
// What the official Linux agent does (Azure/iot-hub-device-update @ b96895bb, read in
// src/extensions/update_manifest_handlers/steps_handler/src/steps_handler.cpp,
// src/utils/workflow_utils/src/workflow_utils.c, src/extensions/extension_manager/src/
// extension_manager.cpp, src/agent/adu_core_interface/src/adu_core_interface.c,
// src/extensions/update_manifest_handlers/steps_handler/README.md and
// docs/agent-reference/update-manifest-v4-schema.md):
//
//   - Before any step runs (PrepareStepsWorkflowDataObject, called at the start of
//     Download, Install and IsInstalled), every reference step's child manifest is
//     fetched: workflow_get_step_detached_manifest_file takes the step's
//     detachedManifestFileId, the entry of that id in the parent's files map (name, size,
//     hashes) and the URL of that id in the parent's fileUrls; no URL is a failure
//     (ERC 0x30400001, steps handler "get file entity"). ExtensionManager::Download checks
//     the file's hash from the parent's entry (mismatch: 0x4000000C). The file is
//     {"updateManifest":"<manifest JSON as a string>"}, parsed by workflow_init_from_file
//     with validateManifest=false: no second signature, integrity comes from the signed
//     parent alone.
//   - The child becomes a workflow at level 1 whose files are the child manifest's files
//     map and whose URLs come from the enclosing (parent's) fileUrls.
//   - Compatibility of the child selects components only when a component enumerator is
//     registered; without one (a host device, as here) it is not looked at: every child
//     step runs on the host. "No matching components" (an optional step, 504/604) only
//     exists with an enumerator. A child has at least one step (schema), so a child with
//     no applicable step cannot occur on a host device.
//   - Only one level: "a Child Update cannot contain any reference steps", validated at
//     import; the agent itself does not check it.
//   - IsInstalled of the update is true only when every inline step of the parent and every
//     step of every child is installed (StepsHandler_IsInstalled walks the children with
//     each step handler's IsInstalled, installedCriteria for the image handlers).
//   - Install runs the steps in order, a child's steps in their order within its parent
//     step, install then apply per step, and stops at the first failure.
//   - Reporting (GetReportingJsonValue): lastInstallResult.stepResults has one entry per
//     step of the parent, "step_<index>"; a reference step's entry is its child workflow's
//     result (700 after a successful install and apply, the failing child step's result
//     code, ERC and details otherwise); the child's own steps are not reported (no nesting).
//     installedUpdateId is the parent's updateId.
//
// This agent: the same fetch, check and flattening at deployment preparation; child steps
// run with the handler aduflash/image:1 into the same spare bank as the inline steps (one
// bootloader transition at the end). Differences: the codes are this agent's
// (ERCMissingFile, ERCFileHash, ERCUnsupportedStep for a child with reference steps, which
// is refused rather than followed), a child manifest must name a sha256 and a size of at
// most 1 MiB (maxManifestFile), and a child that is itself a detached (mini) manifest is
// refused with 80300001.

// plannedStep is an inline step to run: one of the deployed manifest, or one of the child
// update a reference step of it names.
type plannedStep struct {
	step adu.Step
	// files is the files map of the manifest the step belongs to.
	files map[string]adu.File
	// at places the step: Step and Child of its StepState.
	at StepState
}

// inlineSteps returns the steps of m to run, in order, a reference step replaced by the
// steps of its child update (fetched with fileUrls and checked against m's file entry).
func (a *Agent) inlineSteps(ctx context.Context, m *adu.Manifest, svc *adu.ServiceProperties) ([]plannedStep, error) {
	var out []plannedStep
	for i, s := range m.Steps {
		switch s.Type {
		case adu.StepInline:
			out = append(out, plannedStep{step: s, files: m.Files, at: StepState{Step: i}})
		case adu.StepReference:
			child, err := a.childManifest(ctx, m, svc, i, s.DetachedManifestFileID)
			if err != nil {
				return nil, err
			}
			a.log.Info("child update", "step", i, "update", child.UpdateID.String(), "steps", len(child.Steps),
				"compatibility", fmt.Sprint(child.Compatibility))
			for j, cs := range child.Steps {
				out = append(out, plannedStep{step: cs, files: child.Files, at: StepState{Step: i,
					Child: &ChildStep{ManifestFileID: s.DetachedManifestFileID, UpdateID: child.UpdateID, Step: j}}})
			}
		default:
			return nil, fmt.Errorf("%w: step %d is a %q step", ErrUnsupportedStep, i, s.Type)
		}
	}
	return out, nil
}

// childManifest fetches and parses the child update of the reference step i of m.
func (a *Agent) childManifest(ctx context.Context, m *adu.Manifest, svc *adu.ServiceProperties, i int, fileID string) (*adu.Manifest, error) {
	data, err := a.fetchManifestFile(ctx, m, svc, fileID, fmt.Sprintf("step %d: child manifest", i))
	if err != nil {
		return nil, err
	}
	text, err := adu.ParseDetachedManifestFile(data)
	if err != nil {
		return nil, fmt.Errorf("%w: step %d: child manifest: %w", ErrBadManifest, i, err)
	}
	child, err := adu.ParseManifest(text)
	if err != nil {
		return nil, fmt.Errorf("%w: step %d: child manifest: %w", ErrBadManifest, i, err)
	}
	if child.IsDetached() {
		return nil, fmt.Errorf("%w: step %d: the child manifest of %s is itself detached", ErrBadManifest, i, child.UpdateID)
	}
	for j, cs := range child.Steps {
		if cs.Type != adu.StepInline {
			return nil, fmt.Errorf("%w: step %d: the child update %s has a %s step (%d); a child update cannot reference others",
				ErrUnsupportedStep, i, child.UpdateID, cs.Type, j)
		}
	}
	return child, nil
}

// fetchManifestFile downloads the file id of m (a detached or child manifest) into memory,
// checking its size and SHA-256 against m's entry: m is signed, the file is not.
func (a *Agent) fetchManifestFile(ctx context.Context, m *adu.Manifest, svc *adu.ServiceProperties, id, what string) ([]byte, error) {
	f, ok := m.Files[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s: file %s is not in files", ErrBadManifest, what, id)
	}
	url := svc.FileURLs[id]
	if url == "" {
		return nil, fmt.Errorf("%w: %s %s (%s)", ErrMissingFile, what, id, f.FileName)
	}
	sum := fileSHA256(f.Hashes)
	if sum == nil {
		return nil, fmt.Errorf("%w: %s %s has no sha256 hash", ErrBadManifest, what, f.FileName)
	}
	if f.SizeInBytes <= 0 || f.SizeInBytes > maxManifestFile {
		return nil, fmt.Errorf("%w: %s %s: sizeInBytes %d (at most %d)", ErrBadManifest, what, f.FileName, f.SizeInBytes, maxManifestFile)
	}
	data, err := a.fetchSmall(ctx, url, f.SizeInBytes, sum)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, f.FileName, err)
	}
	return data, nil
}

// fileSHA256 returns the sha256 digest of a file entry's hashes (name compared without
// case), nil when there is none.
func fileSHA256(hashes map[string][]byte) []byte {
	for name, d := range hashes {
		if strings.EqualFold(name, "sha256") && len(d) == sha256.Size {
			return d
		}
	}
	return nil
}

// sameChild tells whether two StepState places are the same.
func sameChild(x, y *ChildStep) bool {
	if x == nil || y == nil {
		return x == y
	}
	return *x == *y
}
