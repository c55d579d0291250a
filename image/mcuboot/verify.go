package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aduflash/aduflash/image"
)

// Verify checks a signed image against a key, as MCUboot does at boot and as `imgtool verify`
// does: Parse's structural checks, then the hash TLV over header, body and protected TLVs,
// then a signature made by pub. pub may also be a private key (anything with a Public
// method), and may be nil to check the hash only.
//
// A signature counts as made by pub when the KEYHASH (or PUBKEY) TLV before it names pub and
// its type fits pub's key type; a signature with no key TLV before it is tried too, as imgtool
// does. Errors: those of Parse (ErrBadMagic, ErrTruncated, ErrMalformed, ErrTooLarge);
// ErrMalformed without a hash TLV; ErrHashMismatch; ErrKeyMismatch when the image's hash does
// not fit the key type or no signature is for pub; ErrBadSignature when one is but fails.
//
// The parsed image is returned whenever Parse succeeded, also together with a verification
// error, so that callers can report what the image claims to be.
func Verify(data []byte, pub crypto.PublicKey) (*Image, error) {
	img, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return img, img.verify(&signedRegion{region: data[:img.HashedSize()]}, pub)
}

// VerifyTrusted checks a signed image as Verify does, against every key of a keyring until one
// verifies it. It fails with the first error that is not ErrKeyMismatch, or else the first
// ErrKeyMismatch, and with image.ErrUnknownKey when the keyring trusts no key.
func VerifyTrusted(data []byte, kr *image.Keyring) (*Image, error) {
	img, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return img, img.verifyTrusted(&signedRegion{region: data[:img.HashedSize()]}, trustedKeys(kr))
}

// trustedKeys returns the keys a keyring trusts (revoked ones are not).
func trustedKeys(kr *image.Keyring) []crypto.PublicKey {
	var keys []crypto.PublicKey
	if kr == nil {
		return nil
	}
	for _, id := range kr.KeyIDs() {
		if k, err := kr.Lookup(id); err == nil {
			keys = append(keys, k)
		}
	}
	return keys
}

func (img *Image) verifyTrusted(s *signedRegion, keys []crypto.PublicKey) error {
	var first error
	for _, k := range keys {
		err := img.verify(s, k)
		if err == nil {
			return nil
		}
		if first == nil || !errors.Is(err, ErrKeyMismatch) {
			first = err
		}
	}
	if first == nil {
		first = fmt.Errorf("%w: no trusted key to check the MCUboot image with", image.ErrUnknownKey)
	}
	return first
}

// signedRegion is what an image's hash and signatures are checked against: the hashed region
// (header, body, protected TLVs) when it is at hand, and its digests by hash size (SHA-256,
// -384, -512), computed from the region or as it streamed past.
type signedRegion struct {
	region []byte // nil when the region streamed past without being kept
	sums   map[int][]byte
}

// sum returns the region's digest with the hash of the given size, if it is known.
func (s *signedRegion) sum(bits int) ([]byte, bool) {
	if d, ok := s.sums[bits]; ok {
		return d, true
	}
	h, ok := hashAlgs[bits]
	if !ok || s.region == nil {
		return nil, false
	}
	d := h.new()
	d.Write(s.region)
	if s.sums == nil {
		s.sums = map[int][]byte{}
	}
	s.sums[bits] = d.Sum(nil)
	return s.sums[bits], true
}

// verify checks the hash TLVs against s and a signature by pub (nil: the hash only).
func (img *Image) verify(s *signedRegion, pub crypto.PublicKey) error {
	if k, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
		pub = k.Public()
	}
	var keyType image.KeyType
	if pub != nil {
		var err error
		if keyType, err = image.TypeOf(pub); err != nil {
			return err
		}
	}

	// The hash.
	var (
		digest []byte
		pure   bool
		bits   int
	)
	for _, t := range img.Unprotected.Records {
		if t.Type == TLVSigPure {
			pure = true
		}
		h, ok := hashByTLV(t.Type)
		if !ok {
			continue
		}
		if pub != nil && !slices.Contains(allowedVerifyHashes(keyType), h.bits) {
			return fmt.Errorf("%w: the image's %s TLV (offset 0x%x) does not fit the %s key, which needs %s",
				ErrKeyMismatch, t.Name, t.Offset, keyType, hashNames(allowedVerifyHashes(keyType)))
		}
		sum, ok := s.sum(h.bits)
		if !ok {
			return fmt.Errorf("%w: the image's %s TLV (offset 0x%x) names a hash no trusted key takes", ErrKeyMismatch, t.Name, t.Offset)
		}
		if !bytes.Equal(sum, t.Data) {
			return fmt.Errorf("%w: %s TLV at offset 0x%x holds %s, but header, body and protected TLVs (0x0..0x%x) hash to %s",
				ErrHashMismatch, t.Name, t.Offset, short(t.Data), img.HashedSize(), short(sum))
		}
		if digest == nil {
			digest, bits = sum, h.bits
		}
	}
	if digest == nil {
		return fmt.Errorf("%w: the TLV area at 0x%x has no SHA256, SHA384 or SHA512 TLV", ErrMalformed, img.Unprotected.Offset)
	}
	if pub == nil {
		return nil
	}
	if pure && keyType != image.Ed25519 {
		return fmt.Errorf("%w: the image has a pure signature (SIG_PURE), which needs an ed25519 key, not %s", ErrKeyMismatch, keyType)
	}

	pubBytes, err := publicKeyBytes(pub)
	if err != nil {
		return err
	}
	hh := hashAlgs[bits].new()
	hh.Write(pubBytes)
	keyHash := hh.Sum(nil)
	want := sigTLV(keyType)

	const (
		unknown = iota // no KEYHASH/PUBKEY seen yet
		ours
		theirs
	)
	state := unknown
	var (
		badSig    error
		otherKeys []string
		sigTypes  []string
	)
	for _, t := range img.Unprotected.Records {
		switch t.Type {
		case TLVKeyHash:
			if subtle.ConstantTimeCompare(t.Data, keyHash) == 1 {
				state = ours
			} else {
				state = theirs
				otherKeys = append(otherKeys, "KEYHASH "+short(t.Data))
			}
			continue
		case TLVPubKey:
			if bytes.Equal(t.Data, pubBytes) {
				state = ours
			} else {
				state = theirs
				otherKeys = append(otherKeys, "PUBKEY "+short(t.Data))
			}
			continue
		case TLVRSA2048, TLVECDSASig, TLVRSA3072, TLVEd25519:
		default:
			continue
		}
		sigTypes = append(sigTypes, t.Name)
		if state == theirs {
			continue
		}
		if t.Type != want {
			if state == ours {
				badSig = fmt.Errorf("%w: %s TLV at offset 0x%x follows this key's %s but a %s key makes %s signatures",
					ErrBadSignature, t.Name, t.Offset, keyTLVName(img), keyType, TLVName(want))
			}
			continue
		}
		sig := t.Data
		if t.Type == TLVECDSASig && len(sig) >= 2 && int(sig[1])+2 <= len(sig) {
			sig = sig[:int(sig[1])+2] // drop --pad-sig padding, as imgtool does
		}
		if err := checkSignature(s, keyType, pure, digest, pub, sig); err == nil {
			return nil
		}
		if badSig == nil {
			badSig = fmt.Errorf("%w: %s signature TLV at offset 0x%x (0x%x bytes) does not verify with the %s key %s",
				ErrBadSignature, t.Name, t.Offset, t.Len, keyType, short(keyHash))
		}
	}
	if badSig != nil {
		return badSig
	}
	switch {
	case len(sigTypes) == 0:
		return fmt.Errorf("%w: the image is not signed (no signature TLV)", ErrKeyMismatch)
	case len(otherKeys) > 0:
		return fmt.Errorf("%w: the image is signed for %s, not for this %s key (key hash %s)",
			ErrKeyMismatch, strings.Join(otherKeys, ", "), keyType, short(keyHash))
	default:
		return fmt.Errorf("%w: the image has %s signatures, a %s key makes %s signatures",
			ErrKeyMismatch, strings.Join(sigTypes, ", "), keyType, TLVName(want))
	}
}

// checkSignature checks sig by pub over what imgtool signs: for Ed25519 the image digest (or,
// with a pure signature, the region itself), for ECDSA and RSA the region, through its digest
// with the key's signature hash.
func checkSignature(s *signedRegion, keyType image.KeyType, pure bool, digest []byte, pub crypto.PublicKey, sig []byte) error {
	switch {
	case keyType == image.Ed25519 && !pure:
		return image.VerifyMessage(pub, digest, sig)
	case keyType == image.Ed25519:
		if s.region == nil {
			return fmt.Errorf("%w: a pure signature covers the image itself, which was not kept", ErrBadSignature)
		}
		return image.VerifyMessage(pub, s.region, sig)
	}
	bits := 256
	if image.SignatureHash(keyType) == crypto.SHA384 {
		bits = 384
	}
	d, ok := s.sum(bits)
	if !ok {
		return fmt.Errorf("%w: the image's SHA%d was not computed", ErrBadSignature, bits)
	}
	return image.VerifyDigest(pub, d, sig)
}

func keyTLVName(img *Image) string {
	if img.Find(TLVPubKey) != nil {
		return "PUBKEY"
	}
	return "KEYHASH"
}

func hashNames(bits []int) string {
	s := make([]string, len(bits))
	for i, b := range bits {
		s[i] = fmt.Sprintf("SHA%d", b)
	}
	return strings.Join(s, " or ")
}

// short shows the first 8 bytes of a hash in hex.
func short(b []byte) string {
	if len(b) > 8 {
		return hex.EncodeToString(b[:8]) + "…"
	}
	return hex.EncodeToString(b)
}
