package image

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyringLookup(t *testing.T) {
	a := testKeys.get(t, Ed25519)
	b := testKeys.get(t, ECDSAP256)
	c := testKeys.get(t, ECDSAP384)
	kr, err := NewKeyring(a.Public(), b.Public())
	if err != nil {
		t.Fatal(err)
	}
	ida, _ := KeyIDOf(a.Public())
	idb, _ := KeyIDOf(b.Public())
	idc, _ := KeyIDOf(c.Public())
	if p, err := kr.Lookup(ida); err != nil || p == nil {
		t.Errorf("lookup a: %v", err)
	}
	_, err = kr.Lookup(idc)
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), idc.String()) {
		t.Errorf("unknown: %v", err)
	}
	kr.Revoke(idb)
	_, err = kr.Lookup(idb)
	if !errors.Is(err, ErrRevokedKey) || !strings.Contains(err.Error(), idb.String()) {
		t.Errorf("revoked: %v", err)
	}
	// Revoking an id not (yet) trusted still refuses it once added.
	kr.Revoke(idc)
	if id, err := kr.Add("late", c.Public()); err != nil || id != idc {
		t.Fatal(err)
	}
	if _, err := kr.Lookup(idc); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("revoked then added: %v", err)
	}
	if ids := kr.KeyIDs(); len(ids) != 1 || ids[0] != ida {
		t.Errorf("KeyIDs = %v", ids)
	}
	if kr.Name(idc) != "late" || kr.Name(ida) != "" {
		t.Errorf("names %q %q", kr.Name(idc), kr.Name(ida))
	}
	if _, err := NewKeyring("not a key"); !errors.Is(err, ErrBadKey) {
		t.Errorf("NewKeyring(bad): %v", err)
	}
}

func TestKeyIDsSorted(t *testing.T) {
	var pubs []crypto.PublicKey
	for _, kt := range KeyTypes {
		pubs = append(pubs, testKeys.get(t, kt).Public())
	}
	kr, err := NewKeyring(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	ids := kr.KeyIDs()
	if len(ids) != len(KeyTypes) {
		t.Fatalf("%d ids", len(ids))
	}
	for i := 1; i < len(ids); i++ {
		if ids[i-1].String() >= ids[i].String() {
			t.Errorf("KeyIDs not sorted: %v", ids)
		}
	}
}

func writePub(t *testing.T, path string, kt KeyType) KeyID {
	t.Helper()
	k := testKeys.get(t, kt)
	p, err := MarshalPublicKeyPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, p, 0o644); err != nil {
		t.Fatal(err)
	}
	id, _ := KeyIDOf(k.Public())
	return id
}

func TestParseKeyringFile(t *testing.T) {
	dir := t.TempDir()
	idRel := writePub(t, filepath.Join(dir, "keys", "release.pub.pem"), Ed25519)
	absFile := filepath.Join(t.TempDir(), "abs.pub.pem") // outside the keyring's folder
	idAbs := writePub(t, absFile, RSA2048)
	inline, _ := MarshalPublicKeyPEM(testKeys.get(t, ECDSAP256).Public())
	idInline, _ := KeyIDOf(testKeys.get(t, ECDSAP256).Public())
	revokedID, _ := KeyIDOf(testKeys.get(t, ECDSAP384).Public())

	// Top-level settings must come before the first [[key]] table in TOML.
	cfg := `revoked = ["` + revokedID.String() + `", "` + strings.ToUpper(idAbs.String()) + `"]

# keys that may sign images for this product
[[key]]
name = "release-2026"
file = "keys/release.pub.pem"

[[key]]
name = "factory"
pem = """
` + string(inline) + `"""

[[key]]
file = "` + absFile + `"
`
	krPath := filepath.Join(dir, "keyring.toml")
	if err := os.WriteFile(krPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	kr, err := LoadKeyring(krPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.Lookup(idRel); err != nil {
		t.Errorf("file= relative to the keyring's folder: %v", err)
	}
	if _, err := kr.Lookup(idInline); err != nil {
		t.Errorf("pem=: %v", err)
	}
	if _, err := kr.Lookup(idAbs); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("absolute file= key listed as revoked: %v", err)
	}
	if _, err := kr.Lookup(revokedID); !errors.Is(err, ErrRevokedKey) {
		t.Errorf("revoked only: %v", err)
	}
	if kr.Name(idRel) != "release-2026" || kr.Name(idInline) != "factory" {
		t.Errorf("names: %q %q", kr.Name(idRel), kr.Name(idInline))
	}
	if got := kr.KeyIDs(); len(got) != 2 {
		t.Errorf("KeyIDs: %v", got)
	}

	// Relative paths resolve against baseDir, not the working directory.
	if _, err := ParseKeyring([]byte(`[[key]]
file = "keys/release.pub.pem"
`), dir); err != nil {
		t.Errorf("ParseKeyring with baseDir: %v", err)
	}
	if _, err := ParseKeyring([]byte(`[[key]]
file = "keys/release.pub.pem"
`), t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseKeyring with another baseDir: %v", err)
	}
	// An empty keyring is valid and trusts nothing.
	empty, err := ParseKeyring(nil, dir)
	if err != nil || len(empty.KeyIDs()) != 0 {
		t.Errorf("empty keyring: %v", err)
	}
}

func TestParseKeyringErrors(t *testing.T) {
	dir := t.TempDir()
	writePub(t, filepath.Join(dir, "ok.pem"), Ed25519)
	os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not pem"), 0o644)
	ok := "[[key]]\nname = \"ok\"\nfile = \"ok.pem\"\n\n"
	for _, c := range []struct {
		name, cfg string
		is        error
		want      []string
	}{
		{"syntax", "[[key]\n", ErrBadKey, []string{"keyring"}},
		{"unknown setting", "trusted = []\n", ErrBadKey, []string{`unknown setting "trusted"`}},
		{"unknown key setting", "[[key]]\nname = \"x\"\npath = \"ok.pem\"\n", ErrBadKey, []string{"unknown setting", "path"}},
		{"both", ok + "[[key]]\nname = \"dup\"\nfile = \"ok.pem\"\npem = \"x\"\n", ErrBadKey, []string{`key[1] ("dup")`, "either file or pem"}},
		{"neither", ok + ok + "[[key]]\nname = \"empty\"\n", ErrBadKey, []string{`key[2] ("empty")`, "needs file or pem"}},
		{"missing file", "[[key]]\nfile = \"gone.pem\"\n", os.ErrNotExist, []string{"key[0]", "gone.pem"}},
		{"bad pem file", ok + "[[key]]\nname = \"junk\"\nfile = \"junk.pem\"\n", ErrBadKey, []string{`key[1] ("junk")`, "no PEM public key"}},
		{"bad inline pem", "[[key]]\npem = \"nope\"\n", ErrBadKey, []string{"key[0]"}},
		{"bad revoked id", "revoked = [\"" + strings.Repeat("a", 32) + "\", \"xyz\"]\n" + ok, ErrBadKey, []string{"revoked[1]", `"xyz"`}},
	} {
		_, err := ParseKeyring([]byte(c.cfg), dir)
		if !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %v", c.name, err, c.is)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not mention %q", c.name, err, w)
			}
		}
	}
	// LoadKeyring prefixes the file's path.
	p := filepath.Join(dir, "bad.toml")
	os.WriteFile(p, []byte("[[key]]\n"), 0o644)
	if _, err := LoadKeyring(p); err == nil || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("LoadKeyring: %v", err)
	}
	if _, err := LoadKeyring(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing keyring: %v", err)
	}
}
