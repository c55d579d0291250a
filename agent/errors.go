package agent

import (
	"context"
	"errors"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/slots"
)

// Sentinel errors. Every deployment failure wraps one of them (or an adu.VerifyError), and
// ResultFor maps it to the result code and extended result code reported to the service.
// Those of the install stages are package install's. Each says what it is about (errkind);
// ErrBootloader leaves it to the bootloader's error it wraps.
var (
	ErrBadManifest        = errkind.New(errkind.Input, "agent: invalid update manifest")
	ErrUnsupportedHandler = errkind.New(errkind.Input, "agent: unsupported update handler")
	ErrUnsupportedStep    = errkind.New(errkind.Input, "agent: unsupported update step")
	ErrIncompatible       = errkind.New(errkind.Input, "agent: update not compatible with this device")
	ErrSlotClass          = install.ErrSlotClass
	ErrDowngrade          = errkind.New(errkind.Input, "agent: downgrade refused")
	ErrRawNotAllowed      = install.ErrRawNotAllowed
	ErrImage              = install.ErrImage
	ErrSlot               = install.ErrSlot
	ErrVerify             = install.ErrVerify
	ErrBootloader         = errkind.New(errkind.Cause, "agent: bootloader transition failed")
	ErrHealth             = errkind.New(errkind.Input, "agent: health checks failed")
	ErrRolledBack         = errkind.New(errkind.Input, "agent: the bootloader rolled the update back")
	ErrMissingFile        = errkind.New(errkind.Input, "agent: no URL for an update file")
	ErrDownload           = install.ErrDownload
	ErrFileHash           = install.ErrFileHash
	ErrRootKeyPackage     = errkind.New(errkind.Input, "agent: root-key package unusable")
	ErrRebooting          = errkind.New(errkind.Environment, "agent: rebooting")
	ErrConfig             = errkind.New(errkind.Input, "agent: invalid configuration")
	// ErrBusy: another agent holds the state folder, or a deployment waits for its reboot.
	ErrBusy = errkind.New(errkind.Input, "agent: busy")
	// ErrSlotCopy: a slot of the spare bank that the update does not write could not be
	// filled from the running bank (CopyState); the cause it wraps tells its kind.
	ErrSlotCopy = errkind.New(errkind.Cause, "agent: copying a slot from the running bank failed")
	// ErrMCUUnreachable: an attached MCU does not answer (unplugged, powered off, its line
	// cannot be opened, no reply after a reset).
	ErrMCUUnreachable = errkind.New(errkind.Environment, "agent: the MCU does not answer")
	// ErrMCUUpload: an attached MCU refused the upload, or its copy does not match the image.
	ErrMCUUpload = errkind.New(errkind.Environment, "agent: the MCU refused the image")
	// ErrMCUBoot: after its reset the MCU does not run the new image (MCUboot refused it or
	// reverted it).
	ErrMCUBoot = errkind.New(errkind.Environment, "agent: the MCU did not boot the new image")
	// ErrMCUHealth: the MCU failed its health check on the new image, and was reverted.
	ErrMCUHealth = errkind.New(errkind.Input, "agent: the MCU failed its health check")
	// ErrMCUNotReverted: the MCU failed its health check and still runs the new image (the
	// reset that reverts it did not).
	ErrMCUNotReverted = errkind.New(errkind.Environment, "agent: the MCU was not reverted")
)

// Extended result codes of this agent (spec §7.2): handler failures in facility 3
// (update content handler), component 32 (custom handler); download failures in facility 4
// (content downloader), component 2 (simple HTTP), value the HTTP status for status errors.
func handlerERC(v uint32) adu.ExtendedResultCode {
	return adu.NewExtendedResultCode(adu.FacilityUpdateContentHandler, 32, v)
}

func downloadERC(v uint32) adu.ExtendedResultCode {
	return adu.NewExtendedResultCode(adu.FacilityContentDownloader, 2, v)
}

// Named extended result codes.
var (
	ERCUnsupportedHandler = handlerERC(0x001)
	ERCUnsupportedStep    = handlerERC(0x002)
	ERCIncompatible       = handlerERC(0x003)
	ERCSlotClass          = handlerERC(0x004)
	ERCDowngrade          = handlerERC(0x005)
	ERCRawNotAllowed      = handlerERC(0x006)
	ERCImage              = handlerERC(0x007)
	ERCImageUnknownKey    = handlerERC(0x008)
	ERCImageSignature     = handlerERC(0x009)
	ERCImageChunk         = handlerERC(0x00A)
	ERCImageTooLarge      = handlerERC(0x00B)
	ERCImageChunkTooLarge = handlerERC(0x00C)
	ERCSlot               = handlerERC(0x010)
	ERCVerify             = handlerERC(0x011)
	ERCBootloader         = handlerERC(0x012)
	ERCActiveUnknown      = handlerERC(0x013)
	ERCSlotCopy           = handlerERC(0x014)
	ERCHealth             = handlerERC(0x020)
	ERCRolledBack         = handlerERC(0x021)
	ERCMissingFile        = handlerERC(0x030)
	// The MCU codes (0x1R0–0x1RF) carry the MCU's place among the configured [[slots.mcu]]
	// (0–15) in their last hex digit; the constants are those of the first MCU.
	ERCMCUUnreachable    = handlerERC(0x100)
	ERCMCUUpload         = handlerERC(0x110)
	ERCMCUBoot           = handlerERC(0x120)
	ERCMCUHealth         = handlerERC(0x130)
	ERCMCUNotReverted    = handlerERC(0x140)
	ERCInternal          = handlerERC(0xFFF)
	ERCDownload          = downloadERC(0x001) // transport failure after retries
	ERCDownloadTooLong   = downloadERC(0x002)
	ERCDownloadTruncated = downloadERC(0x003)
	ERCDownloadChanged   = downloadERC(0x004)
	ERCFileHash          = downloadERC(0x010)
)

// ResultFor maps a deployment error to what the service is told: the result code (failure,
// or cancelled) and the extended result code.
func ResultFor(err error) (adu.ResultCode, adu.ExtendedResultCode) {
	var ve *adu.VerifyError
	var se *download.StatusError
	switch {
	case err == nil:
		return adu.ResultApplySuccess, adu.ERCNone
	case errors.Is(err, context.Canceled):
		return adu.ResultFailureCancelled, adu.ERCNone
	case errors.Is(err, ErrMCUUnreachable):
		return adu.ResultFailure, ERCMCUUnreachable
	case errors.Is(err, ErrMCUUpload):
		return adu.ResultFailure, ERCMCUUpload
	case errors.Is(err, ErrMCUBoot):
		return adu.ResultFailure, ERCMCUBoot
	case errors.Is(err, ErrMCUHealth):
		return adu.ResultFailure, ERCMCUHealth
	case errors.Is(err, ErrMCUNotReverted):
		return adu.ResultFailure, ERCMCUNotReverted
	case errors.Is(err, ErrSlotCopy):
		// Whatever stopped it (an unreadable running slot, a spare too small or sharing its
		// storage, a read-back mismatch): it is no verdict on the update's files.
		return adu.ResultFailure, ERCSlotCopy
	case errors.Is(err, ErrVerify), errors.Is(err, slots.ErrMismatch):
		// The slot does not read back as written, whatever check noticed it (a chunk hash
		// of the read-back is no verdict on the image).
		return adu.ResultFailure, ERCVerify
	case errors.As(err, &ve):
		return adu.ResultFailure, ve.ExtendedResultCode()
	case errors.Is(err, adu.ErrUnsupportedManifestVersion):
		return adu.ResultFailure, adu.ERCUnsupportedManifestVersion
	case errors.Is(err, ErrBadManifest), errors.Is(err, adu.ErrMalformed):
		return adu.ResultFailure, adu.ERCManifestValidationFailed
	case errors.Is(err, ErrRootKeyPackage):
		return adu.ResultFailure, adu.ERCRootKeyPackageParse
	case errors.Is(err, ErrUnsupportedHandler):
		return adu.ResultFailure, ERCUnsupportedHandler
	case errors.Is(err, ErrUnsupportedStep):
		return adu.ResultFailure, ERCUnsupportedStep
	case errors.Is(err, ErrIncompatible):
		return adu.ResultFailure, ERCIncompatible
	case errors.Is(err, ErrSlotClass):
		return adu.ResultFailure, ERCSlotClass
	case errors.Is(err, ErrDowngrade), errors.Is(err, image.ErrDowngrade):
		return adu.ResultFailure, ERCDowngrade
	case errors.Is(err, ErrRawNotAllowed):
		return adu.ResultFailure, ERCRawNotAllowed
	case errors.Is(err, ErrMissingFile):
		return adu.ResultFailure, ERCMissingFile
	case errors.Is(err, ErrFileHash), errors.Is(err, download.ErrHashMismatch):
		return adu.ResultFailure, ERCFileHash
	case errors.As(err, &se):
		return adu.ResultFailure, downloadERC(uint32(se.StatusCode))
	case errors.Is(err, download.ErrTooLong):
		return adu.ResultFailure, ERCDownloadTooLong
	case errors.Is(err, download.ErrTruncated):
		return adu.ResultFailure, ERCDownloadTruncated
	case errors.Is(err, download.ErrChanged):
		return adu.ResultFailure, ERCDownloadChanged
	case errors.Is(err, ErrDownload):
		return adu.ResultFailure, ERCDownload
	case errors.Is(err, image.ErrUnknownKey), errors.Is(err, image.ErrRevokedKey), errors.Is(err, mcuboot.ErrKeyMismatch):
		return adu.ResultFailure, ERCImageUnknownKey
	case errors.Is(err, image.ErrBadSignature):
		return adu.ResultFailure, ERCImageSignature
	case errors.Is(err, image.ErrChunkHash), errors.Is(err, image.ErrPayloadHash):
		return adu.ResultFailure, ERCImageChunk
	case errors.Is(err, image.ErrChunkTooLarge):
		return adu.ResultFailure, ERCImageChunkTooLarge
	case errors.Is(err, image.ErrTooLarge), errors.Is(err, slots.ErrTooLarge):
		return adu.ResultFailure, ERCImageTooLarge
	case errors.Is(err, ErrImage):
		return adu.ResultFailure, ERCImage
	case errors.Is(err, slots.ErrActiveUnknown):
		return adu.ResultFailure, ERCActiveUnknown
	case errors.Is(err, ErrSlot):
		return adu.ResultFailure, ERCSlot
	case errors.Is(err, ErrBootloader):
		return adu.ResultFailure, ERCBootloader
	case errors.Is(err, ErrHealth):
		return adu.ResultFailure, ERCHealth
	case errors.Is(err, ErrRolledBack):
		return adu.ResultFailure, ERCRolledBack
	}
	return adu.ResultFailure, ERCInternal
}

// isMCUCode tells the MCU codes, whose last hex digit names the MCU.
func isMCUCode(erc adu.ExtendedResultCode) bool {
	return erc >= ERCMCUUnreachable && erc < ERCMCUNotReverted+0x10
}
