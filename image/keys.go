package image

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"strings"

	"github.com/aduflash/aduflash/internal/tomlsection"
)

// KeyType names a signature algorithm and key size. The names are the ones imgtool uses for
// `keygen -t`, so one key file serves both aduimg and MCUboot signing.
type KeyType string

// The key types aduimport can generate and sign with.
const (
	Ed25519   KeyType = "ed25519"
	ECDSAP256 KeyType = "ecdsa-p256"
	ECDSAP384 KeyType = "ecdsa-p384"
	RSA2048   KeyType = "rsa-2048"
	RSA3072   KeyType = "rsa-3072"
)

// KeyTypes lists every supported key type, in the order help texts show them.
var KeyTypes = []KeyType{Ed25519, ECDSAP256, ECDSAP384, RSA2048, RSA3072}

// Key errors, verdicts on a key or on the trust in an image (Rejected). Callers test them
// with errors.Is.
var (
	// ErrBadKey: a key file or key value could not be parsed, or is of an unsupported type or size.
	ErrBadKey = reject("bad key")
	// ErrUnknownKey: an image names a key id that is not in the keyring.
	ErrUnknownKey = reject("unknown signing key")
	// ErrRevokedKey: an image names a key id that the keyring revokes.
	ErrRevokedKey = reject("revoked signing key")
	// ErrBadSignature: a signature does not verify with the key it names.
	ErrBadSignature = reject("bad signature")
)

// ParseKeyType parses a key type name as imgtool spells it.
func ParseKeyType(s string) (KeyType, error) {
	for _, t := range KeyTypes {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("%w: key type %q is not one of %s", ErrBadKey, s, keyTypeList())
}

func keyTypeList() string {
	names := make([]string, len(KeyTypes))
	for i, t := range KeyTypes {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// GenerateKey creates a new private key of type t, reading randomness from r
// (crypto/rand.Reader when r is nil).
func GenerateKey(t KeyType, r io.Reader) (crypto.Signer, error) {
	if r == nil {
		r = rand.Reader
	}
	switch t {
	case Ed25519:
		_, priv, err := ed25519.GenerateKey(r)
		return priv, err
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), r)
	case RSA2048:
		return rsa.GenerateKey(r, 2048)
	case RSA3072:
		return rsa.GenerateKey(r, 3072)
	}
	return nil, fmt.Errorf("%w: key type %q is not one of %s", ErrBadKey, t, keyTypeList())
}

// TypeOf reports the KeyType of a public key, or ErrBadKey for keys aduimport does not sign with.
func TypeOf(pub crypto.PublicKey) (KeyType, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return Ed25519, nil
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256, nil
		case elliptic.P384():
			return ECDSAP384, nil
		}
		return "", fmt.Errorf("%w: ECDSA curve %s is not supported (use P-256 or P-384)", ErrBadKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048, nil
		case 3072:
			return RSA3072, nil
		}
		return "", fmt.Errorf("%w: RSA key of %d bits is not supported (use 2048 or 3072)", ErrBadKey, k.N.BitLen())
	}
	return "", fmt.Errorf("%w: key of Go type %T is not supported", ErrBadKey, pub)
}

// MarshalPrivateKeyPEM encodes a private key as PKCS#8 PEM ("PRIVATE KEY"), the form imgtool writes.
func MarshalPrivateKeyPEM(k crypto.Signer) ([]byte, error) {
	if _, err := TypeOf(k.Public()); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes a public key as SubjectPublicKeyInfo PEM ("PUBLIC KEY"), the form
// `imgtool getpub -e pem` writes.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if _, err := TypeOf(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKeyPEM reads the first private key block of a PEM file: PKCS#8 ("PRIVATE KEY",
// what imgtool and `aduimport keygen` write), PKCS#1 ("RSA PRIVATE KEY") or SEC 1
// ("EC PRIVATE KEY"). Encrypted keys are refused with a message saying so.
func ParsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, fmt.Errorf("%w: no PEM private key block found", ErrBadKey)
		}
		if _, enc := b.Headers["Proc-Type"]; enc || b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, fmt.Errorf("%w: the private key is password-protected; decrypt it first (openssl pkey -in KEY -out PLAIN)", ErrBadKey)
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s block: %w", ErrBadKey, b.Type, err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%w: private key of Go type %T cannot sign", ErrBadKey, k)
		}
		// ed25519 keys parse as a value type; normalise nothing else.
		if _, err := TypeOf(s.Public()); err != nil {
			return nil, err
		}
		return s, nil
	}
}

// ParsePublicKeyPEM reads the first public key of a PEM file: SubjectPublicKeyInfo
// ("PUBLIC KEY"), PKCS#1 ("RSA PUBLIC KEY"), or, for convenience, the public half of a private key.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		var (
			k   any
			err error
		)
		switch b.Type {
		case "PUBLIC KEY":
			k, err = x509.ParsePKIXPublicKey(b.Bytes)
		case "RSA PUBLIC KEY":
			k, err = x509.ParsePKCS1PublicKey(b.Bytes)
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			s, perr := ParsePrivateKeyPEM(pem.EncodeToMemory(b))
			if perr != nil {
				return nil, perr
			}
			return s.Public(), nil
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s block: %w", ErrBadKey, b.Type, err)
		}
		if _, err := TypeOf(k); err != nil {
			return nil, err
		}
		return k, nil
	}
	return nil, fmt.Errorf("%w: no PEM public key block found", ErrBadKey)
}

// LoadPrivateKey reads a private key PEM file.
func LoadPrivateKey(path string) (crypto.Signer, error) {
	return tomlsection.LoadFile(path, ParsePrivateKeyPEM)
}

// LoadPublicKey reads a public (or private) key PEM file and returns the public key.
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	return tomlsection.LoadFile(path, ParsePublicKeyPEM)
}

// KeyIDSize is the length in bytes of a KeyID.
const KeyIDSize = 16

// KeyID identifies a public key: the first 16 bytes of the SHA-256 of its DER
// SubjectPublicKeyInfo. It is printed as 32 lower-case hex digits.
type KeyID [KeyIDSize]byte

// String returns the key id as lower-case hex.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// ParseKeyID parses the hex form of a key id.
func ParseKeyID(s string) (KeyID, error) {
	var id KeyID
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != KeyIDSize {
		return id, fmt.Errorf("%w: key id %q is not %d hex digits", ErrBadKey, s, 2*KeyIDSize)
	}
	copy(id[:], b)
	return id, nil
}

// KeyIDOf computes the key id of a public key.
func KeyIDOf(pub crypto.PublicKey) (KeyID, error) {
	var id KeyID
	if _, err := TypeOf(pub); err != nil {
		return id, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return id, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	sum := sha256.Sum256(der)
	copy(id[:], sum[:KeyIDSize])
	return id, nil
}

// SignMessage signs msg with k using the algorithm that belongs to its key type:
// Ed25519 over the message itself; ECDSA P-256 with SHA-256 and P-384 with SHA-384, ASN.1 DER
// signatures; RSA-PSS with SHA-256 and a 32-byte salt.
func SignMessage(k crypto.Signer, msg []byte) ([]byte, error) {
	t, err := TypeOf(k.Public())
	if err != nil {
		return nil, err
	}
	switch t {
	case Ed25519:
		return k.Sign(rand.Reader, msg, crypto.Hash(0))
	case ECDSAP256:
		d := sha256.Sum256(msg)
		return k.Sign(rand.Reader, d[:], crypto.SHA256)
	case ECDSAP384:
		d := sha512.Sum384(msg)
		return k.Sign(rand.Reader, d[:], crypto.SHA384)
	default: // RSA
		d := sha256.Sum256(msg)
		return k.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256})
	}
}

// VerifyMessage checks a signature made by SignMessage. It returns ErrBadSignature when the
// signature does not match.
func VerifyMessage(pub crypto.PublicKey, msg, sig []byte) error {
	t, err := TypeOf(pub)
	if err != nil {
		return err
	}
	switch SignatureHash(t) {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		return VerifyDigest(pub, d[:], sig)
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		return VerifyDigest(pub, d[:], sig)
	}
	if !ed25519.Verify(pub.(ed25519.PublicKey), msg, sig) {
		return fmt.Errorf("%w: %s signature does not match", ErrBadSignature, t)
	}
	return nil
}

// SignatureHash is the hash SignMessage signs with for a key of type t: SHA-256 for ECDSA
// P-256 and RSA, SHA-384 for ECDSA P-384, and 0 for Ed25519, which signs the message itself.
func SignatureHash(t KeyType) crypto.Hash {
	switch t {
	case Ed25519:
		return 0
	case ECDSAP384:
		return crypto.SHA384
	}
	return crypto.SHA256
}

// VerifyDigest checks a signature made by SignMessage over a message whose SignatureHash
// digest is digest, for a caller that hashed the message as it streamed past. Ed25519 signs
// the message itself and cannot be checked from a digest (an error). It returns
// ErrBadSignature when the signature does not match.
func VerifyDigest(pub crypto.PublicKey, digest, sig []byte) error {
	t, err := TypeOf(pub)
	if err != nil {
		return err
	}
	ok := false
	switch t {
	case Ed25519:
		return fmt.Errorf("%w: an ed25519 signature covers the message, not a digest", ErrBadKey)
	case ECDSAP256, ECDSAP384:
		ok = ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest, sig)
	default:
		ok = rsa.VerifyPSS(pub.(*rsa.PublicKey), crypto.SHA256, digest, sig, &rsa.PSSOptions{SaltLength: sha256.Size, Hash: crypto.SHA256}) == nil
	}
	if !ok {
		return fmt.Errorf("%w: %s signature does not match", ErrBadSignature, t)
	}
	return nil
}
