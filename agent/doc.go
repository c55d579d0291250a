// Package agent is the on-device deployment workflow of Azure Device Update: it follows
// the service's desired deviceUpdate.service property, verifies the manifest signature,
// streams each update file into the spare bank's slot, marks the bank pending in the
// bootloader, reboots, and after the boot health-checks and confirms the bank or rolls it
// back, reporting every outcome with the states and result codes of the official agents
// (spec §6, §7).
//
// Scope:
//   - Installing a step's file is package install's: one file into one slot in one pass
//     (download with the ADU file hash, the image format's checks, the slot write, the
//     read-back), resumable from install.Record. The agent prepares the step's slot, checks
//     the image's facts (checkImage: compatibility, versions, the anti-rollback floor) and
//     keeps the resume records in its journal; LocalInstall.DryRun runs the same install
//     writing nothing.
//   - A whole spare bank (copy.go): the slots of the classes no step writes are filled from
//     the running bank's through the same install (a slot copy: resumable, read back against
//     the running slot, skipped where identical) before the bank is marked pending, unless
//     the config keeps or shares the class ([slots.class.NAME] spare); the copies are no
//     manifest steps and have no step results.
//   - Agent: the state machine of spec §6 (startup report; the manifest authenticated
//     before the request is accepted in the ack, a request that is not authentic or arrives
//     while another deployment is installed rejected there with no state change; state 6,
//     success, Failed-then-Idle, cancel, retry by retryTimestamp, duplicates never re-run),
//     the handler "aduflash/image:1" (handlerProperties installedCriteria and
//     slotClass; one image file per step; every step, a child update's too, goes into the
//     same spare bank, which switches in one bootloader transition), compatibility and
//     version checks before the first byte is written, root-key packages on interface ;2,
//     deviceInformation.
//   - MCUs attached to the gateway (mcu.go): a step whose slotClass is a [[slots.mcu]]'s
//     class uploads its MCUboot image into that MCU over SMP (through install, verified as it
//     streams), tests it, resets the MCU, health-checks it and confirms it or lets MCUboot
//     revert it; MCU steps run once the gateway's bank is confirmed (or at once when the
//     deployment writes no bank), each to its own result, and their phases are in the
//     journal, so that Boot finishes them after a power cut.
//   - Record: everything that must survive a power cut, in one journal file (package
//     journal) replaced atomically: the deployment in progress with each step's and each
//     copy's resume record (install.Record: slot cursor, download state with the file hash;
//     the signed image header in a journal file of its own), the last outcome, what each
//     bank holds, and the anti-rollback floors.
//
// After a power cut at any instant the device boots a good bank (the spare is only marked
// pending once every byte in it is verified) and the deployment continues when the service
// delivers it again, from the last chunk verified in the slot: the download resumes with a
// Range request at that chunk's frame, the file hash from its stored state.
//
// Hardware and the outside world are passed in: the slot layout, the bootloader backend, the
// IoT Hub connection (Hub), the HTTP client, the health checks' runner, the reboot. The
// package logs through the given slog.Logger (events, never errors it also returns), never
// exits or panics, and keeps no package-level mutable state.
//
// Reference steps (child updates): each child manifest is fetched at deployment
// preparation with the parent's fileUrls, its size and SHA-256 checked against the parent's
// files entry (the parent is the signed manifest), and its inline steps run in place of the
// reference step, into the same spare bank; stepResults has one entry per step of the
// parent, as the Linux agent reports it (see reference.go and docs/agent.md).
//
// Limits: a child update with reference steps of its own is refused with
// ERCUnsupportedStep; delta download handlers are not run (the full file is downloaded, the
// official agent's fallback); a child update's compatibility selects no components (there
// are none: the host device is updated).
package agent
