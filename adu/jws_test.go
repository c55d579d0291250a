package adu

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func realCapture(t testing.TB) (manifest []byte, jws string) {
	return readTestdata(t, "manifest_v4.json"), string(readTestdata(t, "manifest_v4.sig.jws"))
}

func TestVerifyRealCapture(t *testing.T) {
	m, jws := realCapture(t)
	v, err := Verify(m, jws, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.RootKID != "ADU.200702.R" || v.SigningKID != "ADU.210609.R.S" {
		t.Errorf("kids %q %q", v.RootKID, v.SigningKID)
	}
	if got := base64.StdEncoding.EncodeToString(v.ManifestSHA256); got != "Ly9jOXGsVoCWZ3CutXlYcWCeXcewbDxF/Fn5j3k+ImY=" {
		t.Errorf("sha256 %s", got)
	}
	if !strings.HasPrefix(hex.EncodeToString(v.SigningKey.N.Bytes()), "94b7ec2a8f18b5b7") {
		t.Errorf("signing key n %x…", v.SigningKey.N.Bytes()[:8])
	}
	pm, _, err := VerifyManifest(m, jws, VerifyOptions{})
	if err != nil || pm.UpdateID.Version != "1.1" {
		t.Fatalf("VerifyManifest: %v %+v", err, pm)
	}
	// Only the test roots trusted: the production kid is unknown.
	_, err = Verify(m, jws, VerifyOptions{NoBuiltinRoots: true, Roots: testRoots(t)})
	if !errors.Is(err, ErrUnknownRootKid) || !strings.Contains(err.Error(), "ADU.200702.R") || !strings.Contains(err.Error(), StepRootKey) {
		t.Errorf("test roots only: %v", err)
	}
	// A different key under the production kid: the root signature over the sjwk fails.
	other := testRoots(t)[0]
	other.KID = "ADU.200702.R"
	_, err = Verify(m, jws, VerifyOptions{Roots: []RootKey{other}})
	var ve *VerifyError
	if !errors.Is(err, ErrBadSignature) || !errors.As(err, &ve) || ve.Step != StepSJWKSignature || ve.ExtendedResultCode() != ERCJWSInvalidSignature {
		t.Errorf("wrong root key: %v", err)
	}
	// A trailing newline (a file saved by an editor) is a different manifest.
	_, err = Verify(append(append([]byte(nil), m...), '\n'), jws, VerifyOptions{})
	if !errors.Is(err, ErrHashMismatch) || !errors.As(err, &ve) || ve.ExtendedResultCode() != ERCManifestValidationFailed {
		t.Errorf("trailing newline: %v", err)
	}
}

func testRoots(t testing.TB) []RootKey {
	k, err := ParseRootKeys(readTestdata(t, "rootkeys_test.json"))
	if err != nil || len(k) != 2 {
		t.Fatal(k, err)
	}
	return k
}

// Every single-bit change of the manifest or of its signature must fail.
func TestVerifyRealCaptureEveryBitFlip(t *testing.T) {
	m, jws := realCapture(t)
	check := func(what string, i int, man []byte, sig string) {
		if _, err := Verify(man, sig, VerifyOptions{}); err == nil {
			t.Errorf("%s: byte %d changed, still verifies", what, i)
		} else if !errors.Is(err, ErrMalformedJWS) && !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrHashMismatch) &&
			!errors.Is(err, ErrUnknownRootKid) && !errors.Is(err, ErrUnsupportedAlg) && !errors.Is(err, ErrBadSigningKey) {
			t.Errorf("%s: byte %d: unexpected error %v", what, i, err)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	run := func(f func()) {
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer func() { <-sem; wg.Done() }(); f() }()
	}
	for i := range m {
		run(func() {
			for bit := 0; bit < 8; bit++ {
				c := append([]byte(nil), m...)
				c[i] ^= 1 << bit
				check("manifest", i, c, jws)
			}
		})
	}
	for i := range len(jws) {
		run(func() {
			bit := i % 8 // one bit per position keeps the loop fast
			c := []byte(jws)
			c[i] ^= 1 << bit
			check("signature", i, m, string(c))
			// The base64url/standard alphabet twins of the outer signature are refused too.
			if twin, ok := map[byte]byte{'-': '+', '_': '/'}[jws[i]]; ok {
				c := []byte(jws)
				c[i] = twin
				check("signature (alphabet)", i, m, string(c))
			}
		})
	}
	wg.Wait()
}

// chain is a generated root → signing key chain.
type chain struct {
	root, signer         *rsa.PrivateKey
	rootKID, signingKID  string
	sjwkAlg, alg, jwkAlg string
	stdHeader            bool // encode header/payload segments in the standard alphabet
}

var (
	keysOnce sync.Once
	keys     [3]*rsa.PrivateKey
)

func genKeys(t testing.TB) [3]*rsa.PrivateKey {
	keysOnce.Do(func() {
		for i := range keys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		}
	})
	return keys
}

func newChain(t testing.TB) *chain {
	k := genKeys(t)
	return &chain{root: k[0], signer: k[1], rootKID: "TEST.R", signingKID: "TEST.R.S", sjwkAlg: "RS256", alg: "RS256", jwkAlg: "RS256"}
}

func (c *chain) seg(v any) string {
	b, _ := json.Marshal(v)
	if c.stdHeader {
		return base64.StdEncoding.EncodeToString(b)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func rs256(k *rsa.PrivateKey, s string) string {
	h := sha256.Sum256([]byte(s))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, h[:])
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(sig)
}

func (c *chain) sign(manifestSHA256 []byte) string {
	jwk := map[string]string{"kty": "RSA", "n": base64.RawStdEncoding.EncodeToString(c.signer.N.Bytes()), "e": "AQAB", "alg": c.jwkAlg, "kid": c.signingKID}
	si := c.seg(map[string]string{"alg": c.sjwkAlg, "kid": c.rootKID}) + "." + c.seg(jwk)
	sjwk := si + "." + rs256(c.root, si)
	in := c.seg(map[string]string{"alg": c.alg, "sjwk": sjwk}) + "." + c.seg(map[string]string{"sha256": base64.StdEncoding.EncodeToString(manifestSHA256)})
	return in + "." + rs256(c.signer, in)
}

func (c *chain) roots() []RootKey { return []RootKey{{KID: c.rootKID, Key: &c.root.PublicKey}} }

func TestVerifyGenerated(t *testing.T) {
	m := []byte(`{"manifestVersion":"5","updateId":{"provider":"a","name":"b","version":"1"}}`)
	sum := sha256.Sum256(m)
	c := newChain(t)
	opts := VerifyOptions{Roots: c.roots()}
	if _, err := Verify(m, c.sign(sum[:]), opts); err != nil {
		t.Fatal(err)
	}
	c.stdHeader = true
	if _, err := Verify(m, c.sign(sum[:]), opts); err != nil {
		t.Fatalf("standard base64 header segments: %v", err)
	}
	c.stdHeader = false

	wrong := sha256.Sum256([]byte("other"))
	var ve *VerifyError
	if _, err := Verify(m, c.sign(wrong[:]), opts); !errors.Is(err, ErrHashMismatch) || !errors.As(err, &ve) || ve.Step != StepManifestHash || ve.SigningKID != "TEST.R.S" {
		t.Errorf("wrong hash: %v", err)
	}
	if _, err := Verify(m, c.sign(sum[:16]), opts); !errors.Is(err, ErrMalformedJWS) {
		t.Errorf("short hash: %v", err)
	}
	if _, err := Verify(m, c.sign(sum[:]), VerifyOptions{}); !errors.Is(err, ErrUnknownRootKid) || !strings.Contains(err.Error(), "TEST.R") {
		t.Errorf("unknown kid: %v", err)
	}
	// Signed by the root directly (signer replaced after signing the sjwk).
	k := genKeys(t)
	bad := *c
	bad.signer = k[2]
	jws := bad.sign(sum[:])
	// Re-sign the outer JWS with a key that is not the one in the sjwk.
	parts := strings.Split(jws, ".")
	good := strings.Split(c.sign(sum[:]), ".")
	forged := good[0] + "." + good[1] + "." + parts[2]
	if _, err := Verify(m, forged, opts); !errors.Is(err, ErrBadSignature) || !errors.As(err, &ve) || ve.Step != StepSignature {
		t.Errorf("outer signature by another key: %v", err)
	}
	for _, tc := range []struct {
		mod  func(*chain)
		want error
	}{
		{func(c *chain) { c.alg = "HS256" }, ErrUnsupportedAlg},
		{func(c *chain) { c.alg = "rs256" }, nil},
		{func(c *chain) { c.sjwkAlg = "none" }, ErrUnsupportedAlg},
		{func(c *chain) { c.jwkAlg = "RS512" }, ErrBadSigningKey},
	} {
		cc := *c
		tc.mod(&cc)
		if _, err := Verify(m, cc.sign(sum[:]), opts); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%+v: %v, want %v", cc, err, tc.want)
		}
	}
	for _, jws := range []string{"", "a.b", "a.b.c.d", "..", "a..c", "e30.e30.AA", "eyJhbGciOiJSUzI1NiJ9.e30.AA"} {
		if _, err := Verify(m, jws, opts); !errors.Is(err, ErrMalformedJWS) {
			t.Errorf("%q: %v", jws, err)
		}
	}
}

func TestDisabledKeys(t *testing.T) {
	m, jws := realCapture(t)
	pkg := &RootKeyPackage{DisabledRootKeys: []string{"ADU.200702.R"}}
	_, err := Verify(m, jws, VerifyOptions{Package: pkg})
	var ve *VerifyError
	if !errors.Is(err, ErrDisabledRootKey) || !errors.As(err, &ve) || ve.RootKID != "ADU.200702.R" || ve.ExtendedResultCode() != ERCJWSDisallowedRootKid {
		t.Errorf("disabled root: %v", err)
	}
	// Both DER forms of ADU.210609.R.S (spec §5.4).
	for _, h := range []string{"Y0jA4rDItwp5NIZYPUP8jAQoXIRPSKCDo4xtiWjyvig", "q5xF2ARjhdtH-kaLNTwZAMoXdy0iJQjziQ_AyZWDPRA"} {
		b, _ := base64.RawURLEncoding.DecodeString(h)
		pkg := &RootKeyPackage{DisabledSigningKeys: [][]byte{b}}
		_, err := Verify(m, jws, VerifyOptions{Package: pkg})
		if !errors.Is(err, ErrDisabledSigningKey) || !errors.As(err, &ve) || ve.SigningKID != "ADU.210609.R.S" || ve.ExtendedResultCode() != ERCSigningKeyDisabled {
			t.Errorf("disabled signing key %s: %v", h, err)
		}
	}
	// The other signing key (ADU.220503.R.S) disabled: this one still verifies.
	b, _ := base64.RawURLEncoding.DecodeString("NgJ-I5LbK8GPjAYsGKgNLzD7n2NjLJ4P5GYjDNtN1lo")
	if _, err := Verify(m, jws, VerifyOptions{Package: &RootKeyPackage{DisabledSigningKeys: [][]byte{b}, DisabledRootKeys: []string{"ADU.200703.R"}}}); err != nil {
		t.Errorf("other keys disabled: %v", err)
	}
}

func TestBuiltinRootsMatchTestdata(t *testing.T) {
	want, err := ParseRootKeys(readTestdata(t, "rootkeys.json"))
	if err != nil {
		t.Fatal(err)
	}
	got := BuiltinRootKeys()
	if len(got) != 2 || len(want) != 2 {
		t.Fatalf("%d built-in, %d in testdata", len(got), len(want))
	}
	var raw []struct {
		NHex string `json:"n_hex"`
	}
	json.Unmarshal(readTestdata(t, "rootkeys.json"), &raw)
	for i := range want {
		if got[i].KID != want[i].KID || !got[i].Key.Equal(want[i].Key) || got[i].Key.N.BitLen() != 3072 {
			t.Errorf("root %d: %s vs %s", i, got[i].KID, want[i].KID)
		}
		if hex.EncodeToString(got[i].Key.N.Bytes()) != raw[i].NHex {
			t.Errorf("root %d: n_hex differs", i)
		}
	}
	for _, bad := range []string{`{}`, `[{"kid":"x","n":"AQAB","e":"AQAB"}]`, `[{"kid":"x","n":"!!","e":"AQAB"}]`, `"x"`, `[{"kid":"x","n":"` + strings.Repeat("_", 400) + `","e":"Aw"}]`} {
		if _, err := ParseRootKeys([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestRootKeyPackage(t *testing.T) {
	k := genKeys(t)
	roots := []RootKey{{KID: "R1", Key: &k[0].PublicKey}, {KID: "R2", Key: &k[1].PublicKey}}
	n := func(k *rsa.PrivateKey) string { return base64.RawURLEncoding.EncodeToString(k.N.Bytes()) }
	c := newChain(t)
	_, pkcs1 := SigningKeyHashes(&c.signer.PublicKey)
	protected := `{"isTest":false,"version":2,"published":1700000000,"disabledRootKeys":["OLD.R"],"disabledSigningKeys":[{"alg":"SHA256","hash":"` +
		base64.RawURLEncoding.EncodeToString(pkcs1[:]) + `"}],"rootKeys":{"R2":{"keyType":"RSA","n":"` + n(k[1]) + `","e":65537},"R1":{"keyType":"RSA","n":"` + n(k[0]) + `","e":65537}}}`
	doc := `{"protected": ` + strings.ReplaceAll(protected, ",", ", ") + `, "signatures":[{"alg":"RS256","sig":"` + rs256(k[1], protected) + `"},{"alg":"RS256","sig":"` + rs256(k[0], protected) + `"}]}`
	p, err := ParseRootKeyPackage([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(roots); err != nil {
		t.Fatal(err)
	}
	if p.RootKeys[0].KID != "R2" || p.Version != 2 || p.DisabledRootKeys[0] != "OLD.R" {
		t.Errorf("%+v", p)
	}
	if err := p.Validate(nil); !errors.Is(err, ErrBadRootKeyPackage) {
		t.Errorf("built-in roots: %v", err)
	}
	tampered, _ := ParseRootKeyPackage([]byte(strings.Replace(doc, `"version":2`, `"version":3`, 1)))
	if err := tampered.Validate(roots); !errors.Is(err, ErrBadRootKeyPackage) {
		t.Errorf("tampered: %v", err)
	}
	if !p.SigningKeyDisabled(&c.signer.PublicKey) || p.SigningKeyDisabled(&k[2].PublicKey) {
		t.Error("SigningKeyDisabled")
	}
	// The package's root keys are trusted, its deny list applied.
	m := []byte(`{}`)
	sum := sha256.Sum256(m)
	c.rootKID = "R1"
	if _, err := Verify(m, c.sign(sum[:]), VerifyOptions{Package: p}); !errors.Is(err, ErrDisabledSigningKey) {
		t.Errorf("package deny list: %v", err)
	}
	c.signer = k[2]
	if _, err := Verify(m, c.sign(sum[:]), VerifyOptions{Package: p}); err != nil {
		t.Errorf("package root: %v", err)
	}
	for _, bad := range []string{`{}`, `{"protected":{"rootKeys":{}}}`, `{"protected":{"rootKeys":{},"disabledSigningKeys":[{"alg":"MD5","hash":"AA"}]},"signatures":[]}`} {
		if _, err := ParseRootKeyPackage([]byte(bad)); !errors.Is(err, ErrBadRootKeyPackage) {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
