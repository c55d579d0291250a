package image

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/aduflash/aduflash/internal/errkind"
)

// LoadTrust builds the keyring a command line describes: the keyring file at path (if any)
// plus the public key files pubs, each added under its file name.
func LoadTrust(path string, pubs []string) (*Keyring, error) {
	var (
		kr  *Keyring
		err error
	)
	if path != "" {
		if kr, err = LoadKeyring(path); err != nil {
			return nil, err
		}
	} else if kr, err = NewKeyring(); err != nil {
		return nil, err
	}
	for _, p := range pubs {
		pub, err := LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		if _, err := kr.Add(filepath.Base(p), pub); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	return kr, nil
}

// rejection is this package's verdict on an image or a key: invalid input (errkind.Input)
// that Rejected recognises.
type rejection struct{ text string }

func (e *rejection) Error() string           { return e.text }
func (e *rejection) ErrorKind() errkind.Kind { return errkind.Input }

func reject(text string) error { return &rejection{text: text} }

// Rejected reports whether err is this package's verdict that an image, a key or the trust in
// it is bad, as opposed to a failure to read it: callers map the first to "invalid input".
func Rejected(err error) bool {
	var r *rejection
	var ce *ChunkError
	return errors.As(err, &r) || errors.As(err, &ce)
}
