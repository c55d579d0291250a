package dps

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/aduflash/aduflash/internal/atomicfile"
)

// maxCacheFile bounds the stored assignment read back.
const maxCacheFile = 4 << 10

// SaveAssignment stores a in path, atomically (a power cut leaves the old or the new one).
func SaveAssignment(path string, a Assignment) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("dps: storing the assignment: %w", err)
	}
	return nil
}

// LoadAssignment reads the assignment stored in path for idScope and registrationID. It
// returns false without an error when there is none, or when the stored one was made for
// another id scope or registration id (the config changed: register again). A file that
// cannot be used wraps ErrInvalidCache.
func LoadAssignment(path, idScope, registrationID string) (Assignment, bool, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Assignment{}, false, nil
	case err != nil:
		return Assignment{}, false, fmt.Errorf("dps: stored assignment: %w", err)
	case len(b) > maxCacheFile:
		return Assignment{}, false, fmt.Errorf("%w: %s: %d bytes", ErrInvalidCache, path, len(b))
	}
	var a Assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return Assignment{}, false, fmt.Errorf("%w: %s: %w", ErrInvalidCache, path, err)
	}
	if a.IDScope != idScope || a.RegistrationID != registrationID {
		return Assignment{}, false, nil
	}
	if err := (&RegistrationState{AssignedHub: a.AssignedHub, DeviceID: a.DeviceID}).check(); err != nil {
		return Assignment{}, false, fmt.Errorf("%w: %s: %w", ErrInvalidCache, path, err)
	}
	return a, true, nil
}

// RemoveAssignment deletes the stored assignment (none is no error).
func RemoveAssignment(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dps: removing the stored assignment: %w", err)
	}
	return nil
}
