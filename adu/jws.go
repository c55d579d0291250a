package adu

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// Sentinel errors of Verify; every error it returns wraps exactly one of them inside a
// *VerifyError naming the step and the key ids involved.
var (
	ErrMalformedJWS       = errkind.New(errkind.Input, "malformed JWS")
	ErrUnsupportedAlg     = errkind.New(errkind.Input, "unsupported algorithm")
	ErrUnknownRootKid     = errkind.New(errkind.Input, "unknown root key")
	ErrDisabledRootKey    = errkind.New(errkind.Input, "root key disabled by the root-key package")
	ErrBadSigningKey      = errkind.New(errkind.Input, "bad signing key")
	ErrDisabledSigningKey = errkind.New(errkind.Input, "signing key disabled by the root-key package")
	ErrBadSignature       = errkind.New(errkind.Input, "bad signature")
	ErrHashMismatch       = errkind.New(errkind.Input, "manifest hash mismatch")
)

// Verification steps (§5.2), as VerifyError.Step names them.
const (
	StepSplit         = "split JWS"                                  // 1
	StepHeader        = "JWS header"                                 // 2
	StepSJWKHeader    = "sjwk header"                                // 3
	StepRootKey       = "root key lookup"                            // 4
	StepSJWKSignature = "root key signature over the signing key"    // 5
	StepSigningKey    = "signing key"                                // 6
	StepSignature     = "signing key signature over the JWS payload" // 7
	StepManifestHash  = "manifest hash"                              // 8
	StepManifest      = "manifest"                                   // 9 (VerifyManifest: parse after a good signature)
)

// VerifyError tells which step of the signature check failed and which keys were involved.
type VerifyError struct {
	Step       string // one of the Step… constants
	RootKID    string // the sjwk header's kid, once read
	SigningKID string // the signing JWK's kid, once read
	Err        error  // one of the sentinel errors
	Detail     string
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "adu: manifest signature: %s: %v", e.Step, e.Err)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.RootKID != "" {
		fmt.Fprintf(&b, " (root key %s", e.RootKID)
		if e.SigningKID != "" {
			fmt.Fprintf(&b, ", signing key %s", e.SigningKID)
		}
		b.WriteString(")")
	}
	return b.String()
}

func (e *VerifyError) Unwrap() error { return e.Err }

// ExtendedResultCode is what the Linux agent reports for the failure (§5.2).
func (e *VerifyError) ExtendedResultCode() ExtendedResultCode {
	switch {
	case errors.Is(e.Err, ErrUnknownRootKid):
		return ERCJWSMissingRootKid
	case errors.Is(e.Err, ErrDisabledRootKey):
		return ERCJWSDisallowedRootKid
	case errors.Is(e.Err, ErrDisabledSigningKey):
		return ERCSigningKeyDisabled
	case errors.Is(e.Err, ErrBadSignature):
		return ERCJWSInvalidSignature
	case errors.Is(e.Err, ErrBadSigningKey):
		return ERCJWSInvalidSJWKPayload
	case errors.Is(e.Err, ErrHashMismatch), errors.Is(e.Err, ErrMalformed), errors.Is(e.Err, ErrUnsupportedManifestVersion):
		return ERCManifestValidationFailed
	}
	return ERCJWSBadStructure
}

// VerifyOptions says whom to trust. The zero value trusts the built-in production roots.
type VerifyOptions struct {
	// Roots are trusted in addition to the built-in ones (e.g. the test roots); a kid given
	// here replaces a built-in one of the same kid.
	Roots []RootKey
	// NoBuiltinRoots leaves the built-in production roots out.
	NoBuiltinRoots bool
	// Package is the stored (already validated) root-key package: its rootKeys are trusted
	// after the built-in ones and Roots, its disabledRootKeys and disabledSigningKeys refused.
	Package *RootKeyPackage
}

// Verification is what a successful Verify established.
type Verification struct {
	RootKID        string
	SigningKID     string
	SigningKey     *rsa.PublicKey
	ManifestSHA256 []byte
}

// Verify checks the updateManifestSignature jws over the exact manifest bytes as §5.2 says:
// the sjwk (signing key) in the JWS header must be signed (RS256) by a trusted, not disabled
// root key named by its kid; the signing key must not be disabled; the JWS must be signed
// (RS256) by the signing key; its payload's sha256 must equal SHA-256(manifest).
//
// Header and payload segments and the base64 fields inside them (n, e, sha256) are accepted
// in either base64 alphabet with optional padding, as the Linux agent does (they are signed
// as text, so this adds no malleability). The outer signature segment must be base64url
// without padding, as the service sends it, so that every byte of the JWS is bound.
func Verify(manifest []byte, jws string, opts VerifyOptions) (*Verification, error) {
	v := &verifying{}
	parts, err := v.split(StepSplit, "", jws)
	if err != nil {
		return nil, err
	}
	sjwk, err := v.header(parts[0])
	if err != nil {
		return nil, err
	}
	key, err := v.signingKey(sjwk, &opts)
	if err != nil {
		return nil, err
	}
	if err := v.signature(parts, key); err != nil {
		return nil, err
	}
	sum, err := v.manifestHash(parts[1], manifest)
	if err != nil {
		return nil, err
	}
	return &Verification{RootKID: v.ve.RootKID, SigningKID: v.ve.SigningKID, SigningKey: key, ManifestSHA256: sum}, nil
}

// verifying is one run of Verify: the steps of §5.2, each a method, and the key ids they
// learn, which every later failure names.
type verifying struct{ ve VerifyError }

// fail returns the *VerifyError of a failed step.
func (v *verifying) fail(step string, err error, format string, args ...any) error {
	e := v.ve
	e.Step, e.Err, e.Detail = step, err, fmt.Sprintf(format, args...)
	return &e
}

// split cuts a compact JWS (the outer one, or the sjwk: what names it) into its three
// non-empty parts (steps 1 and 3).
func (v *verifying) split(step, what, s string) ([]string, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return nil, v.fail(step, ErrMalformedJWS, "%swant 3 non-empty dot-separated parts, got %d", what, len(parts))
	}
	return parts, nil
}

// header reads the JWS header (step 2): alg RS256 and the sjwk it returns.
func (v *verifying) header(seg string) (string, error) {
	hdr, err := segmentObject(seg)
	if err != nil {
		return "", v.fail(StepHeader, ErrMalformedJWS, "%v", err)
	}
	if err := v.checkAlg(StepHeader, hdr, "no alg in the header"); err != nil {
		return "", err
	}
	sjwk, _, err := hdr.str("sjwk")
	if err != nil || sjwk == "" {
		return "", v.fail(StepHeader, ErrMalformedJWS, "no sjwk (signed signing key) in the header")
	}
	return sjwk, nil
}

// checkAlg requires alg RS256 (in any case) in a header; missing says that there is none.
func (v *verifying) checkAlg(step string, hdr object, missing string) error {
	alg, _, err := hdr.str("alg")
	if err != nil || alg == "" {
		return v.fail(step, ErrMalformedJWS, "%s", missing)
	}
	if !strings.EqualFold(alg, "RS256") {
		return v.fail(step, ErrUnsupportedAlg, "alg %.20q, want RS256", alg)
	}
	return nil
}

// signingKey checks the sjwk and returns the signing key it carries (steps 3 to 6): its
// header names a trusted root key that is not disabled, that root signed it, and the key
// is a good RSA key that is not disabled.
func (v *verifying) signingKey(sjwk string, opts *VerifyOptions) (*rsa.PublicKey, error) {
	sp, err := v.split(StepSJWKHeader, "sjwk: ", sjwk)
	if err != nil {
		return nil, err
	}
	sh, err := segmentObject(sp[0])
	if err != nil {
		return nil, v.fail(StepSJWKHeader, ErrMalformedJWS, "%v", err)
	}
	kid, _, err := sh.str("kid")
	if err != nil || kid == "" {
		return nil, v.fail(StepSJWKHeader, ErrMalformedJWS, "no kid")
	}
	v.ve.RootKID = kid
	if err := v.checkAlg(StepSJWKHeader, sh, "no alg"); err != nil {
		return nil, err
	}
	root, err := opts.lookupRoot(kid)
	if err != nil {
		return nil, v.fail(StepRootKey, err, "")
	}
	ssig, err := decodeB64(sp[2])
	if err != nil {
		return nil, v.fail(StepSJWKSignature, ErrMalformedJWS, "signature is not base64")
	}
	if !verifyRS256(root, sp[0]+"."+sp[1], ssig) {
		return nil, v.fail(StepSJWKSignature, ErrBadSignature, "")
	}
	jwk, err := segmentObject(sp[1])
	if err != nil {
		return nil, v.fail(StepSigningKey, ErrBadSigningKey, "%v", err)
	}
	v.ve.SigningKID, _, _ = jwk.str("kid")
	key, err := jwkKey(jwk)
	if err != nil {
		return nil, v.fail(StepSigningKey, ErrBadSigningKey, "%v", err)
	}
	if opts.Package != nil && opts.Package.SigningKeyDisabled(key) {
		return nil, v.fail(StepSigningKey, ErrDisabledSigningKey, "")
	}
	return key, nil
}

// signature checks the JWS signature by the signing key (step 7); the segment must be
// unpadded base64url, so that every byte of the JWS is bound.
func (v *verifying) signature(parts []string, key *rsa.PublicKey) error {
	sig, err := base64.RawURLEncoding.Strict().DecodeString(parts[2])
	if err != nil {
		return v.fail(StepSignature, ErrMalformedJWS, "signature is not unpadded base64url")
	}
	if !verifyRS256(key, parts[0]+"."+parts[1], sig) {
		return v.fail(StepSignature, ErrBadSignature, "")
	}
	return nil
}

// manifestHash checks that the payload's sha256 is the manifest's SHA-256, and returns it
// (step 8).
func (v *verifying) manifestHash(seg string, manifest []byte) ([]byte, error) {
	pl, err := segmentObject(seg)
	if err != nil {
		return nil, v.fail(StepManifestHash, ErrMalformedJWS, "payload: %v", err)
	}
	want, _, err := pl.str("sha256")
	if err != nil || want == "" {
		return nil, v.fail(StepManifestHash, ErrMalformedJWS, "payload has no sha256")
	}
	wantSum, err := decodeB64(want)
	if err != nil || len(wantSum) != sha256.Size {
		return nil, v.fail(StepManifestHash, ErrMalformedJWS, "payload sha256 is not 32 bytes in base64")
	}
	sum := sha256.Sum256(manifest)
	if subtle.ConstantTimeCompare(sum[:], wantSum) != 1 {
		return nil, v.fail(StepManifestHash, ErrHashMismatch, "signed %s, manifest has %s",
			base64.StdEncoding.EncodeToString(wantSum), base64.StdEncoding.EncodeToString(sum[:]))
	}
	return sum[:], nil
}

// VerifyManifest verifies manifest with Verify and only then parses it (§5.2 step 9). A parse
// failure after a good signature is returned as a *VerifyError wrapping the parse error.
func VerifyManifest(manifest []byte, jws string, opts VerifyOptions) (*Manifest, *Verification, error) {
	v, err := Verify(manifest, jws, opts)
	if err != nil {
		return nil, nil, err
	}
	m, err := ParseManifest(manifest)
	if err != nil {
		return nil, v, &VerifyError{Step: StepManifest, RootKID: v.RootKID, SigningKID: v.SigningKID, Err: err}
	}
	return m, v, nil
}

func (o *VerifyOptions) lookupRoot(kid string) (*rsa.PublicKey, error) {
	if o.Package != nil {
		for _, d := range o.Package.DisabledRootKeys {
			if d == kid {
				return nil, ErrDisabledRootKey
			}
		}
	}
	for _, r := range o.Roots {
		if r.KID == kid {
			return r.Key, nil
		}
	}
	if !o.NoBuiltinRoots {
		for _, r := range builtinRoots {
			if r.KID == kid {
				return r.Key, nil
			}
		}
	}
	if o.Package != nil {
		for _, r := range o.Package.RootKeys {
			if r.KID == kid {
				return r.Key, nil
			}
		}
	}
	return nil, ErrUnknownRootKid
}

func verifyRS256(key *rsa.PublicKey, signed string, sig []byte) bool {
	h := sha256.Sum256([]byte(signed))
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, h[:], sig) == nil
}

// Limits on keys taken from the wire.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// jwkKey builds the signing key from a JWK: kty RSA (if present), alg RS256 (if present), e
// 65537 (the Linux agent requires "AQAB"), n of 2048..4096 bits.
func jwkKey(o object) (*rsa.PublicKey, error) {
	if kty, ok, _ := o.str("kty"); ok && kty != "RSA" {
		return nil, fmt.Errorf("kty %.20q, want RSA", kty)
	}
	if alg, ok, _ := o.str("alg"); ok && !strings.EqualFold(alg, "RS256") {
		return nil, fmt.Errorf("alg %.20q, want RS256", alg)
	}
	ns, _, err := o.str("n")
	if err != nil || ns == "" {
		return nil, errors.New("no n")
	}
	es, _, err := o.str("e")
	if err != nil || es == "" {
		return nil, errors.New("no e")
	}
	nb, err := decodeB64(ns)
	if err != nil {
		return nil, errors.New("n is not base64")
	}
	eb, err := decodeB64(es)
	if err != nil {
		return nil, errors.New("e is not base64")
	}
	if e := new(big.Int).SetBytes(eb); !e.IsInt64() || e.Int64() != 65537 {
		return nil, errors.New("e is not 65537")
	}
	return rsaKey(nb, 65537)
}

func rsaKey(n []byte, e int) (*rsa.PublicKey, error) {
	N := new(big.Int).SetBytes(n)
	if b := N.BitLen(); b < minRSABits || b > maxRSABits {
		return nil, fmt.Errorf("%d-bit modulus, want %d..%d", b, minRSABits, maxRSABits)
	}
	if N.Bit(0) == 0 {
		return nil, errors.New("even modulus")
	}
	return &rsa.PublicKey{N: N, E: e}, nil
}

// segmentObject decodes a JWS header or payload segment into a JSON object.
func segmentObject(seg string) (object, error) {
	b, err := decodeB64(seg)
	if err != nil {
		return object{}, errors.New("not base64")
	}
	o, ok, err := parseObject(b, "")
	if err != nil || !ok {
		return object{}, errors.New("not a JSON object")
	}
	return o, nil
}

// decodeB64 accepts both alphabets and optional padding, as the Linux agent does (§5.1).
func decodeB64(s string) ([]byte, error) {
	t := strings.TrimRight(s, "=")
	if len(s)-len(t) > 2 || strings.ContainsAny(t, "=\r\n") {
		return nil, errors.New("bad base64")
	}
	t = strings.NewReplacer("-", "+", "_", "/").Replace(t)
	return base64.RawStdEncoding.DecodeString(t)
}

// SigningKeyHashes returns SHA-256 of the key's SubjectPublicKeyInfo DER and of its PKCS#1
// RSAPublicKey DER: a disabledSigningKeys entry may hold either (§5.5).
func SigningKeyHashes(key *rsa.PublicKey) (spki, pkcs1 [32]byte) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err == nil {
		spki = sha256.Sum256(der)
	}
	pkcs1 = sha256.Sum256(x509.MarshalPKCS1PublicKey(key))
	return
}

func equalAny(h []byte, sums ...[32]byte) bool {
	for _, s := range sums {
		if bytes.Equal(h, s[:]) {
			return true
		}
	}
	return false
}
