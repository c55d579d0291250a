package hub

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/internal/errkind"
)

// ErrSigner is wrapped by every error of NewSigner, NewSignerFromKeys, Sign, MarshalRootKeys
// and SignRootKeyPackage, around the error that tells what failed (errkind.Cause).
var ErrSigner = errkind.New(errkind.Cause, "hub: signer")

// Key sizes. DefaultSignerBits is what the Device Update service's root and signing keys
// have (spec §5.1, §5.3), and device clients rely on it: the FreeRTOS middleware keeps keys and
// signatures in fixed buffers sized for 3072 bits, and the 342-character base64 modulus of a
// 2048-bit key is not whole 4-character groups, which a strict decoder refuses. The range is
// what the agent's verifier accepts (adu: 2048..4096-bit moduli, e = 65537).
const (
	DefaultSignerBits = 3072
	minSignerBits     = 2048
	maxSignerBits     = 4096
)

// Signer signs update manifests as the Device Update service does (spec §5.1): a root key
// signs a JWK of the signing key (the "sjwk", a compact JWS whose header names the root kid),
// and the signing key signs {"sha256": SHA-256(manifest)} in a compact JWS whose header
// carries the sjwk. Make one with NewSigner or NewSignerFromKeys (the zero Signer signs
// nothing); it is immutable and safe for concurrent use.
type Signer struct {
	root       *rsa.PrivateKey
	rootKID    string
	signing    *rsa.PrivateKey
	signingKID string
	sjwk       string // the signed signing key, computed once (RS256 is deterministic)
}

// RootPrivateKey is a root key with its private half: what signs sjwks and root-key packages.
type RootPrivateKey struct {
	KID string
	Key *rsa.PrivateKey
}

// NewSigner generates a root key and a signing key of bits bits each (0: DefaultSignerBits,
// what the service uses; 2048..4096 are accepted, the range the agent's verifier takes, for
// tests that want quick keys). random is passed
// to rsa.GenerateKey (nil: crypto/rand); since Go 1.26 that ignores it unless
// GODEBUG=cryptocustomrand=1 (testing/cryptotest.SetGlobalRandom makes tests deterministic).
func NewSigner(random io.Reader, rootKID, signingKID string, bits int) (*Signer, error) {
	if bits == 0 {
		bits = DefaultSignerBits
	}
	if bits < minSignerBits || bits > maxSignerBits {
		return nil, fmt.Errorf("%w: %d-bit keys, want %d..%d", ErrSigner, bits, minSignerBits, maxSignerBits)
	}
	if err := checkKIDs(rootKID, signingKID); err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	root, err := rsa.GenerateKey(random, bits)
	if err != nil {
		return nil, fmt.Errorf("%w: generating the root key: %w", ErrSigner, err)
	}
	signing, err := rsa.GenerateKey(random, bits)
	if err != nil {
		return nil, fmt.Errorf("%w: generating the signing key: %w", ErrSigner, err)
	}
	return NewSignerFromKeys(root, rootKID, signing, signingKID)
}

// NewSignerFromKeys builds a Signer from existing keys. Both must be valid RSA keys of
// 2048..4096 bits with e = 65537, as the agent's verifier requires.
func NewSignerFromKeys(root *rsa.PrivateKey, rootKID string, signing *rsa.PrivateKey, signingKID string) (*Signer, error) {
	if err := checkKIDs(rootKID, signingKID); err != nil {
		return nil, err
	}
	if err := checkPrivateKey(root); err != nil {
		return nil, fmt.Errorf("%w: root key %s: %w", ErrSigner, rootKID, err)
	}
	if err := checkPrivateKey(signing); err != nil {
		return nil, fmt.Errorf("%w: signing key %s: %w", ErrSigner, signingKID, err)
	}
	s := &Signer{root: root, rootKID: rootKID, signing: signing, signingKID: signingKID}
	h, err := sjwkHeaderJSON(rootKID)
	if err != nil {
		return nil, err
	}
	jwk, err := signingJWK(&signing.PublicKey, signingKID)
	if err != nil {
		return nil, err
	}
	in := b64u(h) + "." + b64u(jwk)
	sig, err := rs256(root, in)
	if err != nil {
		return nil, fmt.Errorf("%w: signing the signing key: %w", ErrSigner, err)
	}
	s.sjwk = in + "." + sig
	return s, nil
}

func checkKIDs(rootKID, signingKID string) error {
	for _, kid := range []string{rootKID, signingKID} {
		if err := checkKID(kid); err != nil {
			return fmt.Errorf("%w: %w", ErrSigner, err)
		}
	}
	return nil
}

func checkKID(kid string) error {
	if kid == "" || !utf8.ValidString(kid) {
		return fmt.Errorf("key id %q: want non-empty UTF-8", kid)
	}
	return nil
}

// checkPrivateKey refuses a key that checkPublicKey refuses, or that is not consistent.
func checkPrivateKey(k *rsa.PrivateKey) error {
	if k == nil {
		return errors.New("no key")
	}
	if err := checkPublicKey(&k.PublicKey); err != nil {
		return err
	}
	return k.Validate()
}

// checkPublicKey refuses a missing key, a modulus outside minSignerBits..maxSignerBits and an
// exponent other than 65537.
func checkPublicKey(k *rsa.PublicKey) error {
	if k == nil || k.N == nil {
		return errors.New("no key")
	}
	if b := k.N.BitLen(); b < minSignerBits || b > maxSignerBits {
		return fmt.Errorf("%d-bit modulus, want %d..%d", b, minSignerBits, maxSignerBits)
	}
	if k.E != 65537 {
		return fmt.Errorf("exponent %d, want 65537", k.E)
	}
	return nil
}

// Sign returns the updateManifestSignature for the exact manifest bytes, in the shape of the
// service's: header {"alg":"RS256","sjwk":…}, payload {"sha256":"<standard base64, padded>"},
// all three segments base64url without padding.
func (s *Signer) Sign(manifest []byte) (string, error) {
	if s == nil || s.signing == nil || s.sjwk == "" {
		return "", fmt.Errorf("%w: not made by NewSigner or NewSignerFromKeys", ErrSigner)
	}
	h, err := headerJSON(s.sjwk)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(manifest)
	in := b64u(h) + "." + b64u(payloadJSON(sum))
	sig, err := rs256(s.signing, in)
	if err != nil {
		return "", fmt.Errorf("%w: signing the manifest: %w", ErrSigner, err)
	}
	return in + "." + sig, nil
}

// RootKey is the public root key with its kid, for adu.VerifyOptions.Roots.
func (s *Signer) RootKey() adu.RootKey {
	return adu.RootKey{KID: s.rootKID, Key: &s.root.PublicKey}
}

// RootPrivateKey is the root key with its private half, for SignRootKeyPackage.
func (s *Signer) RootPrivateKey() RootPrivateKey {
	return RootPrivateKey{KID: s.rootKID, Key: s.root}
}

// SigningKID is the signing key's kid (the JWK's "kid").
func (s *Signer) SigningKID() string { return s.signingKID }

// SigningKey is the public signing key.
func (s *Signer) SigningKey() *rsa.PublicKey { return &s.signing.PublicKey }

// SigningKeyHash is SHA-256 of the signing key's SubjectPublicKeyInfo DER: the value of a
// root-key package's disabledSigningKeys entry that disables it (§5.5).
func (s *Signer) SigningKeyHash() [32]byte {
	spki, _ := adu.SigningKeyHashes(&s.signing.PublicKey)
	return spki
}

// SignedSigningKey is the sjwk: the compact JWS of the signing key's JWK signed by the root.
func (s *Signer) SignedSigningKey() string { return s.sjwk }

// signingJWK is the JWK of the sjwk payload in the service's member order, n in the standard
// base64 alphabet without padding.
func signingJWK(k *rsa.PublicKey, kid string) ([]byte, error) {
	return jsonObject(
		"kty", jsonStr("RSA"),
		"n", jsonStr(base64.RawStdEncoding.EncodeToString(k.N.Bytes())),
		"e", jsonStr("AQAB"),
		"alg", jsonStr("RS256"),
		"kid", jsonStr(kid),
	)
}

func sjwkHeaderJSON(rootKID string) ([]byte, error) {
	return jsonObject("alg", jsonStr("RS256"), "kid", jsonStr(rootKID))
}

func headerJSON(sjwk string) ([]byte, error) {
	return jsonObject("alg", jsonStr("RS256"), "sjwk", jsonStr(sjwk))
}

func payloadJSON(sum [32]byte) []byte {
	b, _ := jsonObject("sha256", jsonStr(base64.StdEncoding.EncodeToString(sum[:])))
	return b
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rs256(k *rsa.PrivateKey, signed string) (string, error) {
	h := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(nil, k, crypto.SHA256, h[:])
	if err != nil {
		return "", err
	}
	return b64u(sig), nil
}

// jsonValue is already-encoded JSON.
type jsonValue []byte

// jsonStr encodes s as a JSON string without HTML escapes (callers pass valid UTF-8, so
// nothing is replaced).
func jsonStr(s string) jsonValue {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	_ = e.Encode(s) // encoding a string cannot fail
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// jsonObject writes a compact JSON object with members in the given order: name, value, ….
func jsonObject(kv ...any) ([]byte, error) {
	if len(kv)%2 != 0 {
		return nil, fmt.Errorf("%w: odd member list", ErrSigner)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		name, ok := kv[i].(string)
		if !ok {
			return nil, fmt.Errorf("%w: member name %v", ErrSigner, kv[i])
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(jsonStr(name))
		b.WriteByte(':')
		switch v := kv[i+1].(type) {
		case jsonValue:
			b.Write(v)
		default:
			enc, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("%w: member %s: %w", ErrSigner, name, err)
			}
			b.Write(enc)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// rootKeyJSON is one entry of the spec's rootkeys.json (its "source" member left out).
type rootKeyJSON struct {
	KID  string `json:"kid"`
	Kty  string `json:"kty"`
	Alg  string `json:"alg"`
	Bits int    `json:"bits"`
	N    string `json:"n"`
	E    string `json:"e"`
	EInt int    `json:"e_int"`
	NHex string `json:"n_hex"`
}

// MarshalRootKeys writes root keys in the format of the spec's testdata/adu/rootkeys.json
// (read back by adu.ParseRootKeys): an indented JSON array of {kid, kty, alg, bits, n (base64url
// without padding), e "AQAB", e_int 65537, n_hex}, with a final newline.
func MarshalRootKeys(keys []adu.RootKey) ([]byte, error) {
	out := make([]rootKeyJSON, 0, len(keys))
	for i, k := range keys {
		if err := checkKID(k.KID); err != nil {
			return nil, fmt.Errorf("%w: root key %d: %w", ErrSigner, i, err)
		}
		if err := checkPublicKey(k.Key); err != nil {
			return nil, fmt.Errorf("%w: root key %s: %w", ErrSigner, k.KID, err)
		}
		n := k.Key.N.Bytes()
		out = append(out, rootKeyJSON{
			KID: k.KID, Kty: "RSA", Alg: "RS256", Bits: k.Key.N.BitLen(),
			N: b64u(n), E: "AQAB", EInt: 65537, NHex: hex.EncodeToString(n),
		})
	}
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	e.SetIndent("", "  ")
	if err := e.Encode(out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSigner, err)
	}
	return b.Bytes(), nil
}

// RootKeyPackageOptions are the "protected" members of a root-key package besides rootKeys.
type RootKeyPackageOptions struct {
	IsTest    bool
	Version   int64
	Published int64 // Unix seconds
	// DisabledRootKeys are kids refused for sjwk checks.
	DisabledRootKeys []string
	// DisabledSigningKeys are SHA-256 hashes of signing keys' SubjectPublicKeyInfo DER
	// (Signer.SigningKeyHash); the agent also matches PKCS#1 DER hashes, see
	// adu.SigningKeyHashes.
	DisabledSigningKeys [][32]byte
}

// SignRootKeyPackage builds a root-key package (spec §5.5) whose rootKeys are the public
// halves of roots, in that order, and whose signatures[i] is roots[i]'s RS256 signature over
// the compact "protected" member — what adu.ParseRootKeyPackage and
// (*adu.RootKeyPackage).Validate, like the Linux agent, check for every trusted root. The
// protected members are written in the order isTest, version, published, disabledRootKeys,
// disabledSigningKeys, rootKeys; n, hash and sig are base64url without padding, e a number.
// RS256 is deterministic, so the output depends only on the arguments.
func SignRootKeyPackage(roots []RootPrivateKey, opts RootKeyPackageOptions) ([]byte, error) {
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: root-key package: no root keys", ErrSigner)
	}
	var rk bytes.Buffer
	rk.WriteByte('{')
	seen := map[string]bool{}
	for i, r := range roots {
		if err := checkKID(r.KID); err != nil {
			return nil, fmt.Errorf("%w: root-key package: root key %d: %w", ErrSigner, i, err)
		}
		if seen[r.KID] {
			return nil, fmt.Errorf("%w: root-key package: root key %s twice", ErrSigner, r.KID)
		}
		seen[r.KID] = true
		if err := checkPrivateKey(r.Key); err != nil {
			return nil, fmt.Errorf("%w: root-key package: root key %s: %w", ErrSigner, r.KID, err)
		}
		entry, err := jsonObject("keyType", jsonStr("RSA"), "n", jsonStr(b64u(r.Key.N.Bytes())), "e", jsonValue("65537"))
		if err != nil {
			return nil, err
		}
		if i > 0 {
			rk.WriteByte(',')
		}
		rk.Write(jsonStr(r.KID))
		rk.WriteByte(':')
		rk.Write(entry)
	}
	rk.WriteByte('}')

	dr, err := jsonArray(len(opts.DisabledRootKeys), func(i int) ([]byte, error) {
		kid := opts.DisabledRootKeys[i]
		if err := checkKID(kid); err != nil {
			return nil, fmt.Errorf("%w: root-key package: disabledRootKeys[%d]: %w", ErrSigner, i, err)
		}
		return jsonStr(kid), nil
	})
	if err != nil {
		return nil, err
	}
	ds, err := jsonArray(len(opts.DisabledSigningKeys), func(i int) ([]byte, error) {
		return jsonObject("alg", jsonStr("SHA256"), "hash", jsonStr(b64u(opts.DisabledSigningKeys[i][:])))
	})
	if err != nil {
		return nil, err
	}
	protected, err := jsonObject(
		"isTest", opts.IsTest,
		"version", opts.Version,
		"published", opts.Published,
		"disabledRootKeys", dr,
		"disabledSigningKeys", ds,
		"rootKeys", jsonValue(rk.Bytes()),
	)
	if err != nil {
		return nil, err
	}
	sigs, err := jsonArray(len(roots), func(i int) ([]byte, error) {
		sig, err := rs256(roots[i].Key, string(protected))
		if err != nil {
			return nil, fmt.Errorf("%w: root-key package: signing with %s: %w", ErrSigner, roots[i].KID, err)
		}
		return jsonObject("alg", jsonStr("RS256"), "sig", jsonStr(sig))
	})
	if err != nil {
		return nil, err
	}
	return jsonObject("protected", jsonValue(protected), "signatures", sigs)
}

// jsonArray writes the compact JSON array of the n elements that elem encodes, in order.
func jsonArray(n int, elem func(i int) ([]byte, error)) (jsonValue, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		e, err := elem(i)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(e)
	}
	b.WriteByte(']')
	return b.Bytes(), nil
}
