package hub

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
)

func readADUTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../adu/testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// newTestSigner makes a Signer with quick (2048-bit) keys.
func newTestSigner(t *testing.T, rootKID, signingKID string) *Signer {
	t.Helper()
	s, err := NewSigner(nil, rootKID, signingKID, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func unb64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		t.Fatalf("segment %.30q… is not unpadded base64url: %v", s, err)
	}
	return b
}

// memberNames lists a JSON object's member names in document order.
func memberNames(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// The JSON the signer writes is byte for byte the JSON of the real service capture, given the
// capture's keys, kids and sjwk signature: only the signatures themselves differ.
func TestSignerReproducesRealCapture(t *testing.T) {
	manifest := readADUTestdata(t, "manifest_v4.json")
	parts := strings.Split(string(readADUTestdata(t, "manifest_v4.sig.jws")), ".")
	if len(parts) != 3 {
		t.Fatalf("capture has %d parts", len(parts))
	}
	realHeader := unb64(t, parts[0])
	var h struct{ SJWK string }
	if err := json.Unmarshal(realHeader, &h); err != nil {
		t.Fatal(err)
	}
	sp := strings.Split(h.SJWK, ".")
	if len(sp) != 3 {
		t.Fatalf("sjwk has %d parts", len(sp))
	}
	realJWK := unb64(t, sp[1])
	var jwk struct{ N, Kid string }
	if err := json.Unmarshal(realJWK, &jwk); err != nil {
		t.Fatal(err)
	}
	n, err := base64.RawStdEncoding.Strict().DecodeString(jwk.N)
	if err != nil {
		t.Fatalf("capture's n is not unpadded standard base64: %v", err)
	}
	key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537}

	gotJWK, err := signingJWK(key, jwk.Kid)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotJWK, realJWK) || b64u(gotJWK) != sp[1] {
		t.Errorf("JWK:\n got %s\nwant %s", gotJWK, realJWK)
	}
	gotSH, err := sjwkHeaderJSON("ADU.200702.R")
	if err != nil {
		t.Fatal(err)
	}
	if b64u(gotSH) != sp[0] {
		t.Errorf("sjwk header: got %s, want %s", gotSH, unb64(t, sp[0]))
	}
	gotHeader, err := headerJSON(b64u(gotSH) + "." + b64u(gotJWK) + "." + sp[2])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotHeader, realHeader) || b64u(gotHeader) != parts[0] {
		t.Errorf("header differs from the capture's")
	}
	if got := b64u(payloadJSON(sha256.Sum256(manifest))); got != parts[1] {
		t.Errorf("payload: got %s, want %s", unb64(t, got), unb64(t, parts[1]))
	}
}

// A Signer's output has the capture's structure: the same members in the same order, the
// same alphabets, and for 3072-bit keys and the capture's kids the same segment lengths.
func TestSignShape(t *testing.T) {
	realParts := strings.Split(string(readADUTestdata(t, "manifest_v4.sig.jws")), ".")
	var rh struct{ SJWK string }
	if err := json.Unmarshal(unb64(t, realParts[0]), &rh); err != nil {
		t.Fatal(err)
	}
	realSP := strings.Split(rh.SJWK, ".")
	bits := 2048
	if !testing.Short() {
		bits = 3072
	}
	s, err := NewSigner(nil, "ADU.200702.R", "ADU.210609.R.S", bits)
	if err != nil {
		t.Fatal(err)
	}
	manifest := readADUTestdata(t, "manifest_v4.json")
	jws, err := s.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	header := unb64(t, parts[0])
	unb64(t, parts[2])
	if got := memberNames(t, header); !slices.Equal(got, []string{"alg", "sjwk"}) {
		t.Errorf("header members %v", got)
	}
	var h struct{ Alg, SJWK string }
	json.Unmarshal(header, &h)
	if h.Alg != "RS256" || h.SJWK != s.SignedSigningKey() {
		t.Errorf("header %s", header)
	}
	payload := unb64(t, parts[1])
	var p struct{ SHA256 string }
	json.Unmarshal(payload, &p)
	sum := sha256.Sum256(manifest)
	if p.SHA256 != base64.StdEncoding.EncodeToString(sum[:]) || !slices.Equal(memberNames(t, payload), []string{"sha256"}) {
		t.Errorf("payload %s", payload)
	}
	sp := strings.Split(h.SJWK, ".")
	if len(sp) != 3 {
		t.Fatalf("sjwk has %d parts", len(sp))
	}
	if got := unb64(t, sp[0]); string(got) != `{"alg":"RS256","kid":"ADU.200702.R"}` {
		t.Errorf("sjwk header %s", got)
	}
	jwk := unb64(t, sp[1])
	unb64(t, sp[2])
	if got := memberNames(t, jwk); !slices.Equal(got, []string{"kty", "n", "e", "alg", "kid"}) {
		t.Errorf("JWK members %v", got)
	}
	var k struct{ Kty, N, E, Alg, Kid string }
	json.Unmarshal(jwk, &k)
	n, err := base64.RawStdEncoding.Strict().DecodeString(k.N)
	if err != nil || new(big.Int).SetBytes(n).Cmp(s.SigningKey().N) != 0 || k.Kty != "RSA" || k.E != "AQAB" || k.Alg != "RS256" || k.Kid != "ADU.210609.R.S" {
		t.Errorf("JWK %s", jwk)
	}
	if bits == 3072 {
		for i, l := range []struct{ got, want string }{{parts[0], realParts[0]}, {parts[1], realParts[1]}, {parts[2], realParts[2]}, {sp[0], realSP[0]}, {sp[1], realSP[1]}, {sp[2], realSP[2]}} {
			if len(l.got) != len(l.want) {
				t.Errorf("segment %d: %d chars, the capture's has %d", i, len(l.got), len(l.want))
			}
		}
		if len(jws) != len(strings.Join(realParts, ".")) {
			t.Errorf("JWS of %d chars, the capture's has %d", len(jws), len(strings.Join(realParts, ".")))
		}
	}
	// Deterministic: the same manifest gives the same JWS.
	if again, _ := s.Sign(manifest); again != jws {
		t.Error("Sign is not deterministic")
	}
}

func TestSignVerify(t *testing.T) {
	manifest := readADUTestdata(t, "manifest_v4.json")
	s := newTestSigner(t, "TEST.R", "TEST.R.S")
	jws, err := s.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	opts := adu.VerifyOptions{Roots: []adu.RootKey{s.RootKey()}, NoBuiltinRoots: true}
	m, v, err := adu.VerifyManifest(manifest, jws, opts)
	if err != nil {
		t.Fatal(err)
	}
	if m == nil || v.RootKID != "TEST.R" || v.SigningKID != "TEST.R.S" || !v.SigningKey.Equal(s.SigningKey()) || s.SigningKID() != "TEST.R.S" {
		t.Errorf("verification %+v", v)
	}

	// Another root, under the same kid or not, or only the built-in roots: refused.
	other := newTestSigner(t, "OTHER.R", "OTHER.R.S")
	impostor := adu.RootKey{KID: "TEST.R", Key: other.RootKey().Key}
	for _, tc := range []struct {
		name string
		opts adu.VerifyOptions
		want error
	}{
		{"other key, same kid", adu.VerifyOptions{Roots: []adu.RootKey{impostor}, NoBuiltinRoots: true}, adu.ErrBadSignature},
		{"other root", adu.VerifyOptions{Roots: []adu.RootKey{other.RootKey()}, NoBuiltinRoots: true}, adu.ErrUnknownRootKid},
		{"built-in roots", adu.VerifyOptions{}, adu.ErrUnknownRootKid},
	} {
		if _, _, err := adu.VerifyManifest(manifest, jws, tc.opts); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// The other signer's signature does not carry over to this manifest's root.
	ojws, err := other.Sign(manifest)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adu.Verify(manifest, ojws, opts); !errors.Is(err, adu.ErrUnknownRootKid) {
		t.Errorf("other signer's JWS: %v", err)
	}

	// Any single changed byte of the manifest: hash mismatch.
	r := rand.New(rand.NewPCG(1, 2))
	mod := make([]byte, len(manifest))
	for range 300 {
		copy(mod, manifest)
		i := r.IntN(len(mod))
		mod[i] ^= byte(1 + r.IntN(255))
		if _, err := adu.Verify(mod, jws, opts); !errors.Is(err, adu.ErrHashMismatch) {
			t.Fatalf("byte %d changed: %v", i, err)
		}
	}
	if _, err := adu.Verify(manifest[:len(manifest)-1], jws, opts); !errors.Is(err, adu.ErrHashMismatch) {
		t.Errorf("truncated manifest: %v", err)
	}
	// Any single changed byte of the JWS (to another base64url character): refused.
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for range 200 {
		b := []byte(jws)
		i := r.IntN(len(b))
		if b[i] == '.' {
			continue
		}
		c := alphabet[r.IntN(len(alphabet))]
		if c == b[i] {
			continue
		}
		b[i] = c
		if _, err := adu.Verify(manifest, string(b), opts); err == nil {
			t.Fatalf("JWS byte %d changed to %q: verified", i, c)
		}
	}
}

func TestRootKeyPackage(t *testing.T) {
	manifest := readADUTestdata(t, "manifest_v4.json")
	a := newTestSigner(t, "PKG.A.R", "PKG.A.R.S")
	b := newTestSigner(t, "PKG.B.R", "PKG.B.R.S")
	// A second signing key under root A, and a signer under a root the package disables (keys
	// of a and b reused in other roles).
	k, err := rsa.GenerateKey(nil, 2048)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := NewSignerFromKeys(a.root, "PKG.A.R", k, "PKG.A.R.S2")
	if err != nil {
		t.Fatal(err)
	}
	old, err := NewSignerFromKeys(a.signing, "OLD.R", b.root, "OLD.R.S")
	if err != nil {
		t.Fatal(err)
	}
	opts := RootKeyPackageOptions{
		IsTest:              true,
		Version:             3,
		Published:           1700000000,
		DisabledRootKeys:    []string{"OLD.R"},
		DisabledSigningKeys: [][32]byte{a2.SigningKeyHash()},
	}
	doc, err := SignRootKeyPackage([]RootPrivateKey{b.RootPrivateKey(), a.RootPrivateKey()}, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(doc) {
		t.Fatalf("not JSON: %s", doc)
	}
	var top struct{ Protected json.RawMessage }
	json.Unmarshal(doc, &top)
	if got := memberNames(t, top.Protected); !slices.Equal(got, []string{"isTest", "version", "published", "disabledRootKeys", "disabledSigningKeys", "rootKeys"}) {
		t.Errorf("protected members %v", got)
	}
	if got := memberNames(t, doc); !slices.Equal(got, []string{"protected", "signatures"}) {
		t.Errorf("members %v", got)
	}

	p, err := adu.ParseRootKeyPackage(doc)
	if err != nil {
		t.Fatal(err)
	}
	roots := []adu.RootKey{a.RootKey(), b.RootKey()}
	if err := p.Validate(roots); err != nil {
		t.Fatal(err)
	}
	if !p.IsTest || p.Version != 3 || p.Published != 1700000000 || !slices.Equal(p.DisabledRootKeys, []string{"OLD.R"}) ||
		len(p.DisabledSigningKeys) != 1 || len(p.RootKeys) != 2 || p.RootKeys[0].KID != "PKG.B.R" || p.RootKeys[1].KID != "PKG.A.R" ||
		!p.RootKeys[1].Key.Equal(a.RootKey().Key) || len(p.Signatures) != 2 {
		t.Errorf("parsed %+v", p)
	}
	if h := a2.SigningKeyHash(); !bytes.Equal(p.DisabledSigningKeys[0], h[:]) {
		t.Error("disabled signing key hash")
	}
	// A root that did not sign, the built-in roots, a tampered package: refused.
	if err := p.Validate([]adu.RootKey{old.RootKey()}); !errors.Is(err, adu.ErrBadRootKeyPackage) {
		t.Errorf("root that did not sign: %v", err)
	}
	if err := p.Validate(nil); !errors.Is(err, adu.ErrBadRootKeyPackage) {
		t.Errorf("built-in roots: %v", err)
	}
	tampered, err := adu.ParseRootKeyPackage(bytes.Replace(doc, []byte(`"version":3`), []byte(`"version":4`), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := tampered.Validate(roots); !errors.Is(err, adu.ErrBadRootKeyPackage) {
		t.Errorf("tampered: %v", err)
	}
	again, err := SignRootKeyPackage([]RootPrivateKey{b.RootPrivateKey(), a.RootPrivateKey()}, opts)
	if err != nil || !bytes.Equal(again, doc) {
		t.Fatalf("not deterministic: %v", err)
	}
	// Signatures swapped: each root's signature is looked up at its kid's position.
	var whole struct {
		Protected  json.RawMessage   `json:"protected"`
		Signatures []json.RawMessage `json:"signatures"`
	}
	json.Unmarshal(doc, &whole)
	slices.Reverse(whole.Signatures)
	rev, _ := json.Marshal(whole)
	if q, err := adu.ParseRootKeyPackage(rev); err != nil || q.Validate([]adu.RootKey{a.RootKey()}) == nil {
		t.Errorf("swapped signatures accepted (%v)", err)
	}

	// With the package, the disabled signing key and the disabled root are refused, the
	// package's roots trusted.
	vopts := adu.VerifyOptions{NoBuiltinRoots: true, Package: p}
	for _, tc := range []struct {
		s    *Signer
		want error
	}{
		{a, nil},
		{b, nil},
		{a2, adu.ErrDisabledSigningKey},
		{old, adu.ErrDisabledRootKey},
	} {
		jws, err := tc.s.Sign(manifest)
		if err != nil {
			t.Fatal(err)
		}
		o := vopts
		o.Roots = []adu.RootKey{old.RootKey()}
		if _, err := adu.Verify(manifest, jws, o); !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
			t.Errorf("%s/%s: %v, want %v", tc.s.rootKID, tc.s.SigningKID(), err, tc.want)
		}
		// Without the package every one of them verifies with its own root.
		if _, err := adu.Verify(manifest, jws, adu.VerifyOptions{NoBuiltinRoots: true, Roots: []adu.RootKey{tc.s.RootKey()}}); err != nil {
			t.Errorf("%s/%s without the package: %v", tc.s.rootKID, tc.s.SigningKID(), err)
		}
	}
}

func TestMarshalRootKeys(t *testing.T) {
	file := readADUTestdata(t, "rootkeys.json")
	want := regexp.MustCompile(`,\n\s*"source": "[^"]*"`).ReplaceAll(file, nil)
	got, err := MarshalRootKeys(adu.BuiltinRootKeys())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("built-in roots:\n got %s\nwant %s", got, want)
	}
	s := newTestSigner(t, "MARSHAL.R", "MARSHAL.R.S")
	keys := append(adu.BuiltinRootKeys(), s.RootKey())
	data, err := MarshalRootKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	back, err := adu.ParseRootKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(keys) {
		t.Fatalf("%d keys back, want %d", len(back), len(keys))
	}
	for i := range keys {
		if back[i].KID != keys[i].KID || !back[i].Key.Equal(keys[i].Key) {
			t.Errorf("key %d: %s back as %s", i, keys[i].KID, back[i].KID)
		}
	}
	if empty, err := MarshalRootKeys(nil); err != nil || string(empty) != "[]\n" {
		t.Errorf("no keys: %q, %v", empty, err)
	}
}

func TestSignerErrors(t *testing.T) {
	s := newTestSigner(t, "E.R", "E.R.S")
	small, err := rsa.GenerateKey(nil, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func() error{
		"1024 bits":      func() error { _, err := NewSigner(nil, "R", "S", 1024); return err },
		"8192 bits":      func() error { _, err := NewSigner(nil, "R", "S", 8192); return err },
		"empty root kid": func() error { _, err := NewSigner(nil, "", "S", 0); return err },
		"bad UTF-8 kid":  func() error { _, err := NewSignerFromKeys(s.root, "R", s.signing, "\xff"); return err },
		"nil root":       func() error { _, err := NewSignerFromKeys(nil, "R", s.signing, "S"); return err },
		"nil signing":    func() error { _, err := NewSignerFromKeys(s.root, "R", nil, "S"); return err },
		"small root":     func() error { _, err := NewSignerFromKeys(small, "R", s.signing, "S"); return err },
		"root exponent 3": func() error {
			e3 := *s.root
			e3.E = 3
			_, err := NewSignerFromKeys(&e3, "R", s.signing, "S")
			return err
		},
		"inconsistent signing key": func() error {
			bad := *s.signing
			bad.D = new(big.Int).Add(bad.D, big.NewInt(2))
			_, err := NewSignerFromKeys(s.root, "R", &bad, "S")
			return err
		},
		"zero Signer":     func() error { _, err := new(Signer).Sign(nil); return err },
		"no package keys": func() error { _, err := SignRootKeyPackage(nil, RootKeyPackageOptions{}); return err },
		"duplicate kid": func() error {
			_, err := SignRootKeyPackage([]RootPrivateKey{s.RootPrivateKey(), s.RootPrivateKey()}, RootKeyPackageOptions{})
			return err
		},
		"empty disabled kid": func() error {
			_, err := SignRootKeyPackage([]RootPrivateKey{s.RootPrivateKey()}, RootKeyPackageOptions{DisabledRootKeys: []string{""}})
			return err
		},
		"nil public key": func() error { _, err := MarshalRootKeys([]adu.RootKey{{KID: "R"}}); return err },
		"public key exponent 3": func() error {
			_, err := MarshalRootKeys([]adu.RootKey{{KID: "R", Key: &rsa.PublicKey{N: s.root.N, E: 3}}})
			return err
		},
		"small public key": func() error {
			_, err := MarshalRootKeys([]adu.RootKey{{KID: "R", Key: &small.PublicKey}})
			return err
		},
	} {
		if err := f(); !errors.Is(err, ErrSigner) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// By default a Signer has the service's 3072-bit keys: the signing key's modulus in the sjwk is
// 512 base64 characters, whole 4-character groups that a strict decoder (as embedded clients
// have) takes; a 2048-bit modulus is 342 characters, which such a decoder refuses.
func TestDefaultSignerKeysAreTheServices(t *testing.T) {
	s, err := NewSigner(nil, "ADU.200702.R", "ADU.210609.R.S", 0)
	if err != nil {
		t.Fatal(err)
	}
	if rb, sb := s.RootKey().Key.N.BitLen(), s.SigningKey().N.BitLen(); rb != 3072 || sb != 3072 {
		t.Fatalf("root key %d bits, signing key %d bits, want 3072", rb, sb)
	}
	if n := jwkModulus(t, s); len(n) != 512 {
		t.Fatalf("modulus of %d base64 characters, want 512", len(n))
	} else if _, err := base64.StdEncoding.Strict().DecodeString(n); err != nil {
		t.Fatalf("a strict base64 decoder refuses the modulus: %v", err)
	}
	small := newTestSigner(t, "R", "S")
	if n := jwkModulus(t, small); len(n) != 342 {
		t.Fatalf("2048-bit modulus of %d characters", len(n))
	} else if _, err := base64.StdEncoding.Strict().DecodeString(n); err == nil {
		t.Fatal("a strict base64 decoder takes a 342-character modulus")
	}
}

// jwkModulus returns the "n" of the signing key's JWK in the signer's sjwk.
func jwkModulus(t *testing.T, s *Signer) string {
	t.Helper()
	parts := strings.Split(s.SignedSigningKey(), ".")
	var k struct{ N string }
	if err := json.Unmarshal(unb64(t, parts[1]), &k); err != nil {
		t.Fatal(err)
	}
	return k.N
}
