package adu

import (
	"bytes"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/aduflash/aduflash/internal/errkind"
)

// RootKey is a trusted root key: it signs signing keys (the sjwk of a manifest signature).
type RootKey struct {
	KID string
	Key *rsa.PublicKey
}

// builtinRoots are the production roots of rootkeys_builtin.go.
var builtinRoots = mustRoots(builtinRootKeys)

// BuiltinRootKeys returns the two production root keys every agent embeds (ADU.200702.R,
// ADU.200703.R; spec §5.3).
func BuiltinRootKeys() []RootKey { return append([]RootKey(nil), builtinRoots...) }

type rootKeyConst struct{ kid, n string }

func mustRoots(cs []rootKeyConst) []RootKey {
	var out []RootKey
	for _, c := range cs {
		n, err := base64.RawURLEncoding.DecodeString(c.n)
		if err != nil {
			panic("adu: built-in root key " + c.kid + ": " + err.Error())
		}
		k, err := rsaKey(n, 65537)
		if err != nil {
			panic("adu: built-in root key " + c.kid + ": " + err.Error())
		}
		out = append(out, RootKey{KID: c.kid, Key: k})
	}
	return out
}

// ParseRootKeys parses a list of root keys in the format of the spec's rootkeys.json: a JSON
// array (or a single object) of {"kid":…,"n":<base64>,"e":"AQAB" | "e_int":65537}. Other
// members are ignored.
func ParseRootKeys(data []byte) ([]RootKey, error) {
	var items []json.RawMessage
	switch kind(data) {
	case "an array":
		if err := json.Unmarshal(data, &items); err != nil {
			return nil, pathErr("", "%v", err)
		}
	case "an object":
		items = []json.RawMessage{data}
	default:
		return nil, pathErr("", "want an array of root keys, got %s", kind(data))
	}
	var out []RootKey
	for i, it := range items {
		p := index("", i)
		o, err := mustObject(it, p)
		if err != nil {
			return nil, err
		}
		kid, err := o.needStr("kid")
		if err != nil {
			return nil, err
		}
		if kty, ok, _ := o.str("kty"); ok && kty != "RSA" {
			return nil, pathErr(join(p, "kty"), "%.20q, want RSA", kty)
		}
		k, err := rsaKeyOf(o, p)
		if err != nil {
			return nil, err
		}
		out = append(out, RootKey{KID: kid, Key: k})
	}
	return out, nil
}

// exponent reads e as a base64 string ("AQAB"), a number, or e_int; only 65537 is accepted.
func exponent(o object, p string) (int, error) {
	var e int64 = -1
	switch {
	case kind(o.m["e"]) == "a string":
		s, _, _ := o.str("e")
		b, err := decodeB64(s)
		if err != nil || len(b) > 4 {
			return 0, pathErr(join(p, "e"), "not a base64 exponent")
		}
		e = 0
		for _, c := range b {
			e = e<<8 | int64(c)
		}
	case o.has("e"):
		v, err := integer(o.m["e"], join(p, "e"), 0, math.MaxInt32, false)
		if err != nil {
			return 0, err
		}
		e = v
	case o.has("e_int"):
		v, err := integer(o.m["e_int"], join(p, "e_int"), 0, math.MaxInt32, false)
		if err != nil {
			return 0, err
		}
		e = v
	default:
		return 0, pathErr(join(p, "e"), "missing")
	}
	if e != 65537 {
		return 0, pathErr(join(p, "e"), "exponent %d, want 65537", e)
	}
	return 65537, nil
}

// ErrBadRootKeyPackage: a root-key package that does not parse or whose signatures do not
// verify with the built-in roots (§5.5).
var ErrBadRootKeyPackage = errkind.New(errkind.Input, "bad root-key package")

// RootKeyPackage is a root-key package (§5.5): new root keys and deny lists.
type RootKeyPackage struct {
	IsTest           bool
	Version          int64
	Published        int64
	DisabledRootKeys []string
	// DisabledSigningKeys are SHA-256 hashes of signing keys' DER (SubjectPublicKeyInfo or
	// PKCS#1; either matches).
	DisabledSigningKeys [][]byte
	RootKeys            []RootKey // in the package's order
	Signatures          [][]byte  // RS256 signatures, one per root key position
	protected           []byte    // compact "protected", the signed bytes
}

// ParseRootKeyPackage parses a root-key package. It does not check its signatures; call
// Validate before trusting it, and refuse IsTest packages on production devices.
func ParseRootKeyPackage(data []byte) (*RootKeyPackage, error) {
	p, err := parseRootKeyPackage(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRootKeyPackage, err)
	}
	return p, nil
}

func parseRootKeyPackage(data []byte) (*RootKeyPackage, error) {
	top, err := mustObject(data, "")
	if err != nil {
		return nil, err
	}
	p := &RootKeyPackage{}
	if err := p.parseProtected(top.m["protected"]); err != nil {
		return nil, err
	}
	if p.Signatures, err = parseSignatures(top.m["signatures"]); err != nil {
		return nil, err
	}
	return p, nil
}

// parseProtected reads the "protected" member: its compact form (what the signatures sign),
// isTest, version, published, the disabled keys and the root keys.
func (p *RootKeyPackage) parseProtected(raw json.RawMessage) error {
	pr, err := mustObject(raw, "protected")
	if err != nil {
		return err
	}
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		return pathErr("protected", "%v", err)
	}
	p.protected = c.Bytes()
	if raw := pr.m["isTest"]; !isNull(raw) {
		if err := json.Unmarshal(raw, &p.IsTest); err != nil {
			return pathErr("protected.isTest", "want a boolean, got %s", kind(raw))
		}
	}
	if pr.has("version") {
		if p.Version, err = integer(pr.m["version"], "protected.version", math.MinInt64, math.MaxInt64, false); err != nil {
			return err
		}
	}
	if pr.has("published") {
		if p.Published, err = integer(pr.m["published"], "protected.published", math.MinInt64, math.MaxInt64, false); err != nil {
			return err
		}
	}
	if raw := pr.m["disabledRootKeys"]; !isNull(raw) {
		if kind(raw) != "an array" || json.Unmarshal(raw, &p.DisabledRootKeys) != nil {
			return pathErr("protected.disabledRootKeys", "want an array of kids")
		}
	}
	if p.DisabledSigningKeys, err = parseDisabledSigningKeys(pr.m["disabledSigningKeys"]); err != nil {
		return err
	}
	p.RootKeys, err = parseRootKeys(pr.m["rootKeys"])
	return err
}

// parseDisabledSigningKeys reads protected.disabledSigningKeys: SHA-256 hashes of signing keys
// (null or missing: none).
func parseDisabledSigningKeys(raw json.RawMessage) ([][]byte, error) {
	if isNull(raw) {
		return nil, nil
	}
	var items []json.RawMessage
	if kind(raw) != "an array" || json.Unmarshal(raw, &items) != nil {
		return nil, pathErr("protected.disabledSigningKeys", "want an array, got %s", kind(raw))
	}
	var hashes [][]byte
	for i, it := range items {
		ip := index("protected.disabledSigningKeys", i)
		o, err := mustObject(it, ip)
		if err != nil {
			return nil, err
		}
		if alg, _ := o.needStr("alg"); !strings.EqualFold(alg, "SHA256") {
			return nil, pathErr(join(ip, "alg"), "%.20q, want SHA256", alg)
		}
		hs, err := o.needStr("hash")
		if err != nil {
			return nil, err
		}
		h, err := decodeB64(hs)
		if err != nil || len(h) != 32 {
			return nil, pathErr(join(ip, "hash"), "not a base64 SHA-256")
		}
		hashes = append(hashes, h)
	}
	return hashes, nil
}

// parseRootKeys reads protected.rootKeys: RSA keys by kid, in file order.
func parseRootKeys(raw json.RawMessage) ([]RootKey, error) {
	rk, err := mustObject(raw, "protected.rootKeys")
	if err != nil {
		return nil, err
	}
	kids, err := objectKeys(raw)
	if err != nil {
		return nil, pathErr("protected.rootKeys", "%v", err)
	}
	var keys []RootKey
	for _, kid := range kids {
		k, err := parseRootKey(rk.m[kid], join("protected.rootKeys", kid))
		if err != nil {
			return nil, err
		}
		keys = append(keys, RootKey{KID: kid, Key: k})
	}
	return keys, nil
}

// parseRootKey reads one root key at path kp: {"keyType": "RSA", "n": …, "e": …}.
func parseRootKey(raw json.RawMessage, kp string) (*rsa.PublicKey, error) {
	o, err := mustObject(raw, kp)
	if err != nil {
		return nil, err
	}
	if kt, _, _ := o.str("keyType"); kt != "RSA" {
		return nil, pathErr(join(kp, "keyType"), "%.20q, want RSA", kt)
	}
	return rsaKeyOf(o, kp)
}

// rsaKeyOf reads the RSA public key of the key object o at path p: its modulus n (base64)
// and its exponent (see exponent).
func rsaKeyOf(o object, p string) (*rsa.PublicKey, error) {
	ns, err := o.needStr("n")
	if err != nil {
		return nil, err
	}
	nb, err := decodeB64(ns)
	if err != nil {
		return nil, pathErr(join(p, "n"), "not base64")
	}
	e, err := exponent(o, p)
	if err != nil {
		return nil, err
	}
	k, err := rsaKey(nb, e)
	if err != nil {
		return nil, pathErr(join(p, "n"), "%v", err)
	}
	return k, nil
}

// parseSignatures reads the signatures array: one signature of "protected" per root key.
func parseSignatures(raw json.RawMessage) ([][]byte, error) {
	var sigs []json.RawMessage
	if kind(raw) != "an array" || json.Unmarshal(raw, &sigs) != nil {
		return nil, pathErr("signatures", "want an array, got %s", kind(raw))
	}
	var out [][]byte
	for i, s := range sigs {
		o, err := mustObject(s, index("signatures", i))
		if err != nil {
			return nil, err
		}
		ss, err := o.needStr("sig")
		if err != nil {
			return nil, err
		}
		b, err := decodeB64(ss)
		if err != nil {
			return nil, pathErr(join(index("signatures", i), "sig"), "not base64")
		}
		out = append(out, b)
	}
	return out, nil
}

// Validate checks the package as the Linux agent does (§5.5): for every root in roots (nil:
// the built-in roots) the signature at the position of the root's kid among rootKeys must
// verify (RS256, whatever alg says) over the compact "protected" member. The compact form
// keeps the member order and escapes of the file (the agent re-prints it with parson, which
// differs only for escaped "/" and number spellings, absent from real packages).
func (p *RootKeyPackage) Validate(roots []RootKey) error {
	if roots == nil {
		roots = builtinRoots
	}
	for _, r := range roots {
		i := -1
		for j, k := range p.RootKeys {
			if k.KID == r.KID {
				i = j
				break
			}
		}
		if i < 0 || i >= len(p.Signatures) {
			return fmt.Errorf("%w: no signature for root key %s", ErrBadRootKeyPackage, r.KID)
		}
		if !verifyRS256(r.Key, string(p.protected), p.Signatures[i]) {
			return fmt.Errorf("%w: signature of root key %s does not verify", ErrBadRootKeyPackage, r.KID)
		}
	}
	return nil
}

// SigningKeyDisabled tells whether key is on the package's disabledSigningKeys, by the hash of
// either DER form.
func (p *RootKeyPackage) SigningKeyDisabled(key *rsa.PublicKey) bool {
	if p == nil || len(p.DisabledSigningKeys) == 0 {
		return false
	}
	spki, pkcs1 := SigningKeyHashes(key)
	for _, h := range p.DisabledSigningKeys {
		if equalAny(h, spki, pkcs1) {
			return true
		}
	}
	return false
}

// objectKeys returns the member names of a JSON object in document order (first occurrence).
func objectKeys(raw json.RawMessage) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("want an object")
	}
	var keys []string
	seen := map[string]bool{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := t.(string)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}
