package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadTrust(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey(Ed25519, nil)
	if err != nil {
		t.Fatal(err)
	}
	pemData, _ := MarshalPublicKeyPEM(k.Public())
	pub := filepath.Join(dir, "release.pub.pem")
	if err := os.WriteFile(pub, pemData, 0o644); err != nil {
		t.Fatal(err)
	}
	id, _ := KeyIDOf(k.Public())
	kr, err := LoadTrust("", []string{pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Lookup(id); err != nil || kr.Name(id) != "release.pub.pem" {
		t.Fatalf("key not trusted under its file name: %v %q", err, kr.Name(id))
	}
	ring := filepath.Join(dir, "ring.toml")
	if err := os.WriteFile(ring, []byte(fmt.Sprintf("revoked = [%q]\n", id)), 0o644); err != nil {
		t.Fatal(err)
	}
	kr, err = LoadTrust(ring, []string{pub})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Lookup(id); !errors.Is(err, ErrRevokedKey) {
		t.Fatalf("a key revoked by the keyring file stays revoked when also given as --pub: %v", err)
	}
	if _, err := LoadTrust("", []string{filepath.Join(dir, "nope")}); !errors.Is(err, fs.ErrNotExist) || Rejected(err) {
		t.Fatalf("missing key file: %v (rejected=%v)", err, Rejected(err))
	}
	if _, err := LoadTrust("", []string{ring}); !Rejected(err) {
		t.Fatalf("a file that is no key must be rejected: %v", err)
	}
}

func TestRejected(t *testing.T) {
	for _, e := range []error{
		ErrBadMagic, ErrUnsupportedVersion, ErrHeaderTooLarge, ErrMalformedHeader, ErrChunkHash,
		ErrPayloadHash, ErrTruncated, ErrTrailingData, ErrTooLarge, ErrChunkTooLarge, ErrDowngrade, ErrPayloadSize,
		ErrUnknownKey, ErrRevokedKey, ErrBadSignature, ErrBadKey,
	} {
		if !Rejected(fmt.Errorf("ctx: %w", e)) {
			t.Errorf("%v not rejected", e)
		}
	}
	if Rejected(ErrInvalidOption) {
		t.Error("a signing option is no verdict on an image")
	}
	if Rejected(fs.ErrNotExist) || Rejected(errors.New("disk on fire")) || Rejected(nil) {
		t.Error("I/O errors are not verdicts")
	}
	if !Rejected(&ChunkError{Index: 1, Err: errors.New("x")}) {
		t.Error("a chunk error is a verdict")
	}
}
