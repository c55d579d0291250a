package install

import (
	"context"
	"errors"
	"fmt"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors. Every error of Install wraps one of them (or the caller's Check error, or
// a context error) around its cause. Each says what it is about (errkind); ErrDownload and
// ErrSlot leave it to their cause (a refused download or a too small slot, or a failing
// network or flash).
var (
	// ErrSource: the source cannot be installed as given (a negative size, a local file
	// with a hash to check, a slot copy of more bytes than the slot holds).
	ErrSource = errkind.New(errkind.Input, "install: invalid source")
	// ErrDownload: the download failed (the download package's error is wrapped).
	ErrDownload = errkind.New(errkind.Cause, "install: download failed")
	// ErrRead: reading a local file, or the slot a copy comes from, failed.
	ErrRead = errkind.New(errkind.Environment, "install: reading the file failed")
	// ErrFileHash: the file is not the one whose SHA-256 the source names.
	ErrFileHash = errkind.New(errkind.Input, "install: file hash mismatch")
	// ErrRawNotAllowed: the file is no aduimg or MCUboot image, and raw files are not
	// accepted (or have no SHA-256 to check them by).
	ErrRawNotAllowed = errkind.New(errkind.Input, "install: raw images are not allowed")
	// ErrImage: the image is refused (bad signature, unknown key, chunk hash, too large
	// for the slot ...; the image or image/mcuboot error is wrapped).
	ErrImage = errkind.New(errkind.Input, "install: image rejected")
	// ErrSlotClass: the image is signed for another slot class than the slot's.
	ErrSlotClass = errkind.New(errkind.Input, "install: image for another slot class")
	// ErrSlot: the slot cannot be prepared, opened or written.
	ErrSlot = errkind.New(errkind.Cause, "install: slot write failed")
	// ErrVerify: the slot does not read back as written.
	ErrVerify = errkind.New(errkind.Environment, "install: read-back verification failed")
)

// errStale: a resume record does not fit the file or the slot; Install starts over.
var errStale = errors.New("install: resume point does not match")

// refusal is an error of Installer.Check or of the slot class check: it reaches the caller
// as it is.
type refusal struct{ error }

func (e refusal) Unwrap() error { return e.error }

// classify wraps an error of the pipeline in the sentinel of its stage: errors of the input
// and refusals are already classified; the image formats' verdicts are ErrImage; the rest
// happened writing the slot.
func classify(err error, slot string) error {
	var rf refusal
	switch {
	case errors.As(err, &rf):
		return rf.error
	case errors.Is(err, ErrDownload), errors.Is(err, ErrRead), errors.Is(err, ErrFileHash), errors.Is(err, ErrImage),
		errors.Is(err, ErrSlot), errors.Is(err, ErrAdaptive), errors.Is(err, ErrRawNotAllowed), errors.Is(err, ErrSlotClass),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case image.Rejected(err), mcuboot.Rejected(err):
		return fmt.Errorf("%w: %w", ErrImage, err)
	}
	return fmt.Errorf("%w: writing %s: %w", ErrSlot, slot, err)
}

// errEnded: the input was closed while a chunk was being loaded (the write had failed).
var errEnded = errors.New("install: the input ended")
