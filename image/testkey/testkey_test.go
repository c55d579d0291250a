package testkey

import (
	"testing"

	"github.com/aduflash/aduflash/image"
)

// TestKeyringTrustsKey: the keyring New returns trusts the key it returns, and PEM parses
// back to the same public key.
func TestKeyringTrustsKey(t *testing.T) {
	key, kr := New(t)
	id, err := image.KeyIDOf(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Lookup(id); err != nil {
		t.Fatal(err)
	}
	pub, err := image.ParsePublicKeyPEM(PEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := image.KeyIDOf(pub); err != nil || got != id {
		t.Fatalf("PEM holds key %v (%v), want %v", got, err, id)
	}
}
