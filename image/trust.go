package image

import (
	"errors"
	"fmt"
	"path/filepath"
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

// rejections are the errors that are verdicts on an image or a key.
var rejections = []error{
	ErrBadMagic, ErrUnsupportedVersion, ErrHeaderTooLarge, ErrMalformedHeader, ErrChunkHash,
	ErrPayloadHash, ErrTruncated, ErrTrailingData, ErrTooLarge, ErrChunkTooLarge, ErrDowngrade, ErrPayloadSize,
	ErrUnknownKey, ErrRevokedKey, ErrBadSignature, ErrBadKey,
}

// Rejected reports whether err is this package's verdict that an image, a key or the trust in
// it is bad, as opposed to a failure to read it: callers map the first to "invalid input".
func Rejected(err error) bool {
	for _, r := range rejections {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}
