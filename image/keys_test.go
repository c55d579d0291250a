package image

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseKeyType(t *testing.T) {
	for _, kt := range KeyTypes {
		got, err := ParseKeyType(string(kt))
		if err != nil || got != kt {
			t.Errorf("%s: %v %v", kt, got, err)
		}
	}
	_, err := ParseKeyType("rsa-4096")
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "ed25519, ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072") {
		t.Errorf("rsa-4096: %v", err)
	}
	if _, err := GenerateKey("dsa", nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("GenerateKey(dsa): %v", err)
	}
}

func TestPEMRoundTripAllTypes(t *testing.T) {
	for _, kt := range KeyTypes {
		k := testKeys.get(t, kt)
		if got, err := TypeOf(k.Public()); err != nil || got != kt {
			t.Fatalf("%s: TypeOf = %s, %v", kt, got, err)
		}
		privPEM, err := MarshalPrivateKeyPEM(k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(privPEM), "-----BEGIN PRIVATE KEY-----") {
			t.Errorf("%s: private key is not PKCS#8 PEM:\n%s", kt, privPEM)
		}
		k2, err := ParsePrivateKeyPEM(privPEM)
		if err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		if !k2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s: private key changed in the round trip", kt)
		}
		pubPEM, err := MarshalPublicKeyPEM(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(pubPEM), "-----BEGIN PUBLIC KEY-----") {
			t.Errorf("%s: public key is not SPKI PEM", kt)
		}
		pub, err := ParsePublicKeyPEM(pubPEM)
		if err != nil {
			t.Fatalf("%s: %v", kt, err)
		}
		// The public half of a private key PEM works too.
		pub2, err := ParsePublicKeyPEM(privPEM)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := KeyIDOf(k.Public())
		id1, _ := KeyIDOf(pub)
		id2, _ := KeyIDOf(pub2)
		if id != id1 || id != id2 {
			t.Errorf("%s: key ids %s %s %s", kt, id, id1, id2)
		}
		// Files.
		dir := t.TempDir()
		pp := filepath.Join(dir, "k.pem")
		os.WriteFile(pp, privPEM, 0o600)
		if lk, err := LoadPrivateKey(pp); err != nil || !lk.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s: LoadPrivateKey: %v", kt, err)
		}
		if lp, err := LoadPublicKey(pp); err != nil || !lp.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
			t.Errorf("%s: LoadPublicKey: %v", kt, err)
		}
	}
}

// TestOpenSSLKeys reads keys OpenSSL wrote, in PKCS#8, SEC 1 and PKCS#1 form, and checks the key
// ids against ones computed with openssl and sha256sum (see testdata/keys/README.md).
func TestOpenSSLKeys(t *testing.T) {
	for _, c := range []struct {
		file string
		kt   KeyType
		id   string
	}{
		{"ed25519.pem", Ed25519, "7d3f800d4e337dd72d4a9d95b432f746"},
		{"ecdsa-p256.sec1.pem", ECDSAP256, "b58d5a7b79bcdd4d7b38378c5dcf3b96"},
		{"ecdsa-p384.pem", ECDSAP384, "d34e9fe70a8127452a68865e09a224a7"},
		{"rsa-2048.pkcs1.pem", RSA2048, "1143e477f03e6012109fd2096abccc6e"},
		{"rsa-2048.pkcs1.pub.pem", RSA2048, "1143e477f03e6012109fd2096abccc6e"},
	} {
		path := filepath.Join("testdata", "keys", c.file)
		pub, err := LoadPublicKey(path)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if kt, _ := TypeOf(pub); kt != c.kt {
			t.Errorf("%s: type %s, want %s", c.file, kt, c.kt)
		}
		if id, _ := KeyIDOf(pub); id.String() != c.id {
			t.Errorf("%s: key id %s, want %s (openssl)", c.file, id, c.id)
		}
		if strings.Contains(c.file, ".pub.") {
			if _, err := LoadPrivateKey(path); !errors.Is(err, ErrBadKey) {
				t.Errorf("%s as a private key: %v", c.file, err)
			}
			continue
		}
		k, err := LoadPrivateKey(path)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		sig, err := SignMessage(k, []byte("msg"))
		if err != nil || VerifyMessage(pub, []byte("msg"), sig) != nil {
			t.Errorf("%s: sign/verify: %v", c.file, err)
		}
	}
	// The fixed fuzz key's id, also computed with openssl.
	if id, _ := KeyIDOf(fuzzKey().Public()); id.String() != "6a7ec7d79c497881b8511b4a3599e6ae" {
		t.Errorf("fuzz key id %s", id)
	}
}

func TestPKCS1AndSEC1(t *testing.T) {
	rk := testKeys.get(t, RSA2048).(*rsa.PrivateKey)
	ek := testKeys.get(t, ECDSAP384).(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ek)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pem  []byte
		want crypto.PublicKey
	}{
		{"PKCS#1 private", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}), rk.Public()},
		{"SEC 1 private", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}), ek.Public()},
	} {
		k, err := ParsePrivateKeyPEM(c.pem)
		if err != nil || !k.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
			t.Errorf("%s: %v", c.name, err)
		}
		p, err := ParsePublicKeyPEM(c.pem)
		if err != nil || !p.(interface{ Equal(crypto.PublicKey) bool }).Equal(c.want) {
			t.Errorf("%s as public: %v", c.name, err)
		}
	}
	p, err := ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rk.PublicKey)}))
	if err != nil || !p.(*rsa.PublicKey).Equal(&rk.PublicKey) {
		t.Errorf("PKCS#1 public: %v", err)
	}
	// Other PEM blocks before the key are skipped.
	mixed := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}), x509PKCS8(t, rk)...)
	if _, err := ParsePrivateKeyPEM(mixed); err != nil {
		t.Errorf("key after a certificate block: %v", err)
	}
	if _, err := ParsePublicKeyPEM(mixed); err != nil {
		t.Errorf("public key after a certificate block: %v", err)
	}
	// Damaged DER names the block.
	_, err = ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{0x30, 1, 2}}))
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "EC PRIVATE KEY block") {
		t.Errorf("damaged SEC 1: %v", err)
	}
	_, err = ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 1, 2}}))
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "PUBLIC KEY block") {
		t.Errorf("damaged SPKI: %v", err)
	}
}

func x509PKCS8(t *testing.T, k crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func TestEncryptedKeysRefused(t *testing.T) {
	for _, f := range []string{"encrypted.pem", "encrypted-legacy.pem"} {
		_, err := LoadPrivateKey(filepath.Join("testdata", "keys", f))
		if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "password-protected") || !strings.Contains(err.Error(), f) {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestUnsupportedKeys(t *testing.T) {
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]crypto.Signer{"P-224": p224, "RSA-1024": rsa1024} {
		if _, err := TypeOf(k.Public()); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: TypeOf: %v", name, err)
		}
		if _, err := MarshalPrivateKeyPEM(k); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: MarshalPrivateKeyPEM: %v", name, err)
		}
		if _, err := MarshalPublicKeyPEM(k.Public()); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: MarshalPublicKeyPEM: %v", name, err)
		}
		if _, err := KeyIDOf(k.Public()); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: KeyIDOf: %v", name, err)
		}
		if _, err := ParsePrivateKeyPEM(x509PKCS8(t, k)); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: ParsePrivateKeyPEM: %v", name, err)
		}
		if _, err := SignMessage(k, []byte("m")); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: SignMessage: %v", name, err)
		}
	}
	if _, err := TypeOf(ed25519.PublicKey([]byte{1, 2, 3})); !errors.Is(err, ErrBadKey) {
		t.Errorf("short ed25519 key: %v", err)
	}
	if _, err := TypeOf("not a key"); !errors.Is(err, ErrBadKey) {
		t.Errorf("string: %v", err)
	}
	for _, in := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n"} {
		if _, err := ParsePrivateKeyPEM([]byte(in)); !errors.Is(err, ErrBadKey) {
			t.Errorf("private %q: %v", in, err)
		}
		if _, err := ParsePublicKeyPEM([]byte(in)); !errors.Is(err, ErrBadKey) {
			t.Errorf("public %q: %v", in, err)
		}
	}
	if _, err := LoadPrivateKey(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadPublicKey(filepath.Join(t.TempDir(), "missing.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestKeyIDs(t *testing.T) {
	k := testKeys.get(t, ECDSAP256)
	id, err := KeyIDOf(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := KeyIDOf(k.Public())
	if id != again || len(id.String()) != 32 || strings.ToLower(id.String()) != id.String() {
		t.Errorf("key id %s / %s", id, again)
	}
	back, err := ParseKeyID(" " + id.String() + "\n")
	if err != nil || back != id {
		t.Errorf("ParseKeyID: %v", err)
	}
	for _, bad := range []string{"", "xyz", id.String()[:30], id.String() + "00"} {
		if _, err := ParseKeyID(bad); !errors.Is(err, ErrBadKey) {
			t.Errorf("ParseKeyID(%q): %v", bad, err)
		}
	}
	other, _ := KeyIDOf(testKeys.get(t, Ed25519).Public())
	if other == id {
		t.Error("two keys share an id")
	}
	b, _ := id.MarshalText()
	var u KeyID
	if err := u.UnmarshalText(b); err != nil || u != id {
		t.Errorf("text round trip: %v", err)
	}
}

func TestSignVerifyMessage(t *testing.T) {
	msg := []byte("the header")
	for _, kt := range KeyTypes {
		k := testKeys.get(t, kt)
		sig, err := SignMessage(k, msg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, want := sigLenOK(kt, len(sig)); !ok {
			t.Errorf("%s: %d-byte signature, the format expects %s", kt, len(sig), want)
		}
		if err := VerifyMessage(k.Public(), msg, sig); err != nil {
			t.Errorf("%s: %v", kt, err)
		}
		if err := VerifyMessage(k.Public(), []byte("the headeR"), sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: changed message: %v", kt, err)
		}
		bad := append([]byte(nil), sig...)
		bad[len(bad)/2] ^= 1
		if err := VerifyMessage(k.Public(), msg, bad); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: changed signature: %v", kt, err)
		}
		other, _ := GenerateKey(Ed25519, nil)
		if kt != Ed25519 {
			other = testKeys.get(t, Ed25519)
		}
		if err := VerifyMessage(other.Public(), msg, sig); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: other key: %v", kt, err)
		}
	}
	if err := VerifyMessage("nope", msg, nil); !errors.Is(err, ErrBadKey) {
		t.Errorf("bad key: %v", err)
	}
}
