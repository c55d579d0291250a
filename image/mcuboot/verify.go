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
	digest, bits, pure, err := img.checkHash(s, pub, keyType)
	if err != nil || pub == nil {
		return err
	}
	if pure && keyType != image.Ed25519 {
		return fmt.Errorf("%w: the image has a pure signature (SIG_PURE), which needs an ed25519 key, not %s", ErrKeyMismatch, keyType)
	}
	v, err := newSigCheck(img, s, pub, keyType, pure, digest, bits)
	if err != nil {
		return err
	}
	return v.run()
}

// checkHash checks every hash TLV against s (and, with a key, that the key takes its hash).
// It returns the first one's digest and size, and whether the image has a pure signature.
func (img *Image) checkHash(s *signedRegion, pub crypto.PublicKey, keyType image.KeyType) (digest []byte, bits int, pure bool, err error) {
	for _, t := range img.Unprotected.Records {
		if t.Type == TLVSigPure {
			pure = true
		}
		h, ok := hashByTLV(t.Type)
		if !ok {
			continue
		}
		if pub != nil && !slices.Contains(allowedVerifyHashes(keyType), h.bits) {
			return nil, 0, false, fmt.Errorf("%w: the image's %s TLV (offset 0x%x) does not fit the %s key, which needs %s",
				ErrKeyMismatch, t.Name, t.Offset, keyType, hashNames(allowedVerifyHashes(keyType)))
		}
		sum, ok := s.sum(h.bits)
		if !ok {
			return nil, 0, false, fmt.Errorf("%w: the image's %s TLV (offset 0x%x) names a hash no trusted key takes", ErrKeyMismatch, t.Name, t.Offset)
		}
		if !bytes.Equal(sum, t.Data) {
			return nil, 0, false, fmt.Errorf("%w: %s TLV at offset 0x%x holds %s, but header, body and protected TLVs (0x0..0x%x) hash to %s",
				ErrHashMismatch, t.Name, t.Offset, short(t.Data), img.HashedSize(), short(sum))
		}
		if digest == nil {
			digest, bits = sum, h.bits
		}
	}
	if digest == nil {
		return nil, 0, false, fmt.Errorf("%w: the TLV area at 0x%x has no SHA256, SHA384 or SHA512 TLV", ErrMalformed, img.Unprotected.Offset)
	}
	return digest, bits, pure, nil
}

// sigCheck looks for a signature by one key among an image's TLVs. A signature belongs to the
// KEYHASH or PUBKEY TLV before it; those of another key are passed over.
type sigCheck struct {
	img      *Image
	s        *signedRegion
	pub      crypto.PublicKey
	keyType  image.KeyType
	pure     bool
	digest   []byte
	pubBytes []byte // the key as a PUBKEY TLV holds it
	keyHash  []byte // its hash, as a KEYHASH TLV holds it

	badSig    error    // the first signature of ours (or of no named key) that failed
	otherKeys []string // the keys of other KEYHASH and PUBKEY TLVs
	sigTypes  []string // the signature TLVs seen
}

func newSigCheck(img *Image, s *signedRegion, pub crypto.PublicKey, keyType image.KeyType, pure bool, digest []byte, bits int) (*sigCheck, error) {
	pubBytes, err := publicKeyBytes(pub)
	if err != nil {
		return nil, err
	}
	hh := hashAlgs[bits].new()
	hh.Write(pubBytes)
	return &sigCheck{img: img, s: s, pub: pub, keyType: keyType, pure: pure, digest: digest,
		pubBytes: pubBytes, keyHash: hh.Sum(nil)}, nil
}

// The key the TLVs so far name.
const (
	noKeyYet = iota // no KEYHASH or PUBKEY seen yet
	ourKey
	otherKey
)

// run walks the TLVs: nil at the first signature of ours that verifies, else the error
// that says best why none did.
func (v *sigCheck) run() error {
	state := noKeyYet
	for _, t := range v.img.Unprotected.Records {
		switch t.Type {
		case TLVKeyHash, TLVPubKey:
			state = v.whoseKey(t)
		case TLVRSA2048, TLVECDSASig, TLVRSA3072, TLVEd25519:
			v.sigTypes = append(v.sigTypes, t.Name)
			if state != otherKey && v.signature(t, state) {
				return nil
			}
		}
	}
	return v.failure()
}

// whoseKey tells whether a KEYHASH or PUBKEY TLV names our key, noting other keys.
func (v *sigCheck) whoseKey(t TLV) int {
	if t.Type == TLVKeyHash && subtle.ConstantTimeCompare(t.Data, v.keyHash) == 1 ||
		t.Type == TLVPubKey && bytes.Equal(t.Data, v.pubBytes) {
		return ourKey
	}
	kind := "KEYHASH "
	if t.Type == TLVPubKey {
		kind = "PUBKEY "
	}
	v.otherKeys = append(v.otherKeys, kind+short(t.Data))
	return otherKey
}

// signature checks the signature TLV t, after TLVs naming our key or none: true if it
// verifies. Else it keeps the failure: the first signature that does not verify, unless a
// later one of ours is of the wrong type.
func (v *sigCheck) signature(t TLV, state int) bool {
	want := sigTLV(v.keyType)
	if t.Type != want {
		if state == ourKey {
			v.badSig = fmt.Errorf("%w: %s TLV at offset 0x%x follows this key's %s but a %s key makes %s signatures",
				ErrBadSignature, t.Name, t.Offset, keyTLVName(v.img), v.keyType, TLVName(want))
		}
		return false
	}
	sig := t.Data
	if t.Type == TLVECDSASig && len(sig) >= 2 && int(sig[1])+2 <= len(sig) {
		sig = sig[:int(sig[1])+2] // drop --pad-sig padding, as imgtool does
	}
	if err := checkSignature(v.s, v.keyType, v.pure, v.digest, v.pub, sig); err == nil {
		return true
	}
	if v.badSig == nil {
		v.badSig = fmt.Errorf("%w: %s signature TLV at offset 0x%x (0x%x bytes) does not verify with the %s key %s",
			ErrBadSignature, t.Name, t.Offset, t.Len, v.keyType, short(v.keyHash))
	}
	return false
}

// failure says why no signature verified: a bad signature of ours, none at all, only other
// keys' signatures, or only signatures of another type.
func (v *sigCheck) failure() error {
	switch {
	case v.badSig != nil:
		return v.badSig
	case len(v.sigTypes) == 0:
		return fmt.Errorf("%w: the image is not signed (no signature TLV)", ErrKeyMismatch)
	case len(v.otherKeys) > 0:
		return fmt.Errorf("%w: the image is signed for %s, not for this %s key (key hash %s)",
			ErrKeyMismatch, strings.Join(v.otherKeys, ", "), v.keyType, short(v.keyHash))
	default:
		return fmt.Errorf("%w: the image has %s signatures, a %s key makes %s signatures",
			ErrKeyMismatch, strings.Join(v.sigTypes, ", "), v.keyType, TLVName(sigTLV(v.keyType)))
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
