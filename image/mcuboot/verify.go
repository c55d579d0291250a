package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/subtle"
	"encoding/hex"
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
	if k, ok := pub.(interface{ Public() crypto.PublicKey }); ok {
		pub = k.Public()
	}
	var keyType image.KeyType
	if pub != nil {
		if keyType, err = image.TypeOf(pub); err != nil {
			return img, err
		}
	}
	region := data[:img.HashedSize()]

	// The hash.
	var (
		digest []byte
		halg   hashAlg
		pure   bool
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
			return img, fmt.Errorf("%w: the image's %s TLV (offset 0x%x) does not fit the %s key, which needs %s",
				ErrKeyMismatch, t.Name, t.Offset, keyType, hashNames(allowedVerifyHashes(keyType)))
		}
		d := h.new()
		d.Write(region)
		sum := d.Sum(nil)
		if !bytes.Equal(sum, t.Data) {
			return img, fmt.Errorf("%w: %s TLV at offset 0x%x holds %s, but header, body and protected TLVs (0x0..0x%x) hash to %s",
				ErrHashMismatch, t.Name, t.Offset, short(t.Data), len(region), short(sum))
		}
		if digest == nil {
			digest, halg = sum, h
		}
	}
	if digest == nil {
		return img, fmt.Errorf("%w: the TLV area at 0x%x has no SHA256, SHA384 or SHA512 TLV", ErrMalformed, img.Unprotected.Offset)
	}
	if pub == nil {
		return img, nil
	}
	if pure && keyType != image.Ed25519 {
		return img, fmt.Errorf("%w: the image has a pure signature (SIG_PURE), which needs an ed25519 key, not %s", ErrKeyMismatch, keyType)
	}

	pubBytes, err := publicKeyBytes(pub)
	if err != nil {
		return img, err
	}
	hh := halg.new()
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
		var msg []byte
		switch {
		case keyType == image.Ed25519 && !pure:
			msg = digest
		default:
			msg = region
		}
		if t.Type == TLVECDSASig && len(sig) >= 2 && int(sig[1])+2 <= len(sig) {
			sig = sig[:int(sig[1])+2] // drop --pad-sig padding, as imgtool does
		}
		if err := image.VerifyMessage(pub, msg, sig); err == nil {
			return img, nil
		}
		if badSig == nil {
			badSig = fmt.Errorf("%w: %s signature TLV at offset 0x%x (0x%x bytes) does not verify with the %s key %s",
				ErrBadSignature, t.Name, t.Offset, t.Len, keyType, short(keyHash))
		}
	}
	if badSig != nil {
		return img, badSig
	}
	switch {
	case len(sigTypes) == 0:
		return img, fmt.Errorf("%w: the image is not signed (no signature TLV)", ErrKeyMismatch)
	case len(otherKeys) > 0:
		return img, fmt.Errorf("%w: the image is signed for %s, not for this %s key (key hash %s)",
			ErrKeyMismatch, strings.Join(otherKeys, ", "), keyType, short(keyHash))
	default:
		return img, fmt.Errorf("%w: the image has %s signatures, a %s key makes %s signatures",
			ErrKeyMismatch, strings.Join(sigTypes, ", "), keyType, TLVName(want))
	}
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
