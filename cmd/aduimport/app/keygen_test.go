package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/image"
)

func TestKeygenWritesMatchingPair(t *testing.T) {
	dir := t.TempDir()
	for _, kt := range []image.KeyType{image.Ed25519, image.ECDSAP256, image.ECDSAP384} {
		priv := filepath.Join(dir, string(kt)+".pem")
		code, out, errOut := run(t, "keygen", "--type", string(kt), "-o", priv)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", kt, code, errOut)
		}
		k, err := image.LoadPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := image.LoadPublicKey(filepath.Join(dir, string(kt)+".pub.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := image.TypeOf(pub); got != kt {
			t.Errorf("public key type %s, want %s", got, kt)
		}
		id, _ := image.KeyIDOf(k.Public())
		id2, _ := image.KeyIDOf(pub)
		if id != id2 {
			t.Errorf("%s: private and public halves differ", kt)
		}
		if !strings.Contains(out, id.String()) {
			t.Errorf("%s: output does not name the key id %s: %q", kt, id, out)
		}
		st, err := os.Stat(priv)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s: private key mode %v, want 0600", kt, st.Mode().Perm())
		}
		sig, err := image.SignMessage(k, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		if err := image.VerifyMessage(pub, []byte("hello"), sig); err != nil {
			t.Errorf("%s: %v", kt, err)
		}
	}
}

func TestKeygenRefusesToOverwrite(t *testing.T) {
	priv := filepath.Join(t.TempDir(), "k.pem")
	if code, _, e := run(t, "keygen", "-o", priv); code != 0 {
		t.Fatalf("first keygen: exit %d: %s", code, e)
	}
	before, _ := os.ReadFile(priv)
	code, _, errOut := run(t, "keygen", "-o", priv)
	if code != exitcode.IO || !strings.Contains(errOut, "exists") {
		t.Fatalf("second keygen: exit %d (%q), want %d and a message about the existing file", code, errOut, exitcode.IO)
	}
	after, _ := os.ReadFile(priv)
	if string(before) != string(after) {
		t.Fatal("existing key was overwritten without --force")
	}
	if code, _, e := run(t, "keygen", "--force", "-o", priv); code != 0 {
		t.Fatalf("keygen --force: exit %d: %s", code, e)
	}
	after, _ = os.ReadFile(priv)
	if string(before) == string(after) {
		t.Fatal("--force did not write a new key")
	}
}
