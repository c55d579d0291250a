// Package testkey makes throwaway image signing keys for the tests of the packages that
// verify images: a fresh Ed25519 key, the keyring that trusts it, its public key as a file.
package testkey

import (
	"crypto"
	"crypto/rand"
	"testing"

	"github.com/aduflash/aduflash/image"
)

// New returns a fresh Ed25519 signing key and a keyring that trusts it.
func New(t testing.TB) (crypto.Signer, *image.Keyring) {
	t.Helper()
	key, err := image.GenerateKey(image.Ed25519, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := image.NewKeyring(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return key, kr
}

// PEM returns key's public key in PEM, as the --pub files of the CLIs hold it.
func PEM(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	b, err := image.MarshalPublicKeyPEM(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}
