package mcuboot

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
)

func TestParseVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Version
	}{
		{"0", Version{}},
		{"1", Version{1, 0, 0, 0}},
		{"1.2", Version{1, 2, 0, 0}},
		{"1.2.3", Version{1, 2, 3, 0}},
		{"1.2.3+4", Version{1, 2, 3, 4}},
		{"255.255.65535+4294967295", Version{255, 255, 65535, 4294967295}},
		{"10.0.100+0", Version{10, 0, 100, 0}},
	} {
		got, err := ParseVersion(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "1.", ".1", "1..2", "1.2.3.4", "1+2", "1.2+3", "1.2.3+", "+1", "01", "1.02", "1.2.3+04",
		"256", "1.256", "1.2.65536", "1.2.3+4294967296", "v1.2", "1.2.3-rc1", "-1", " 1", "1.2.3+4+5"} {
		if v, err := ParseVersion(in); err == nil {
			t.Errorf("ParseVersion(%q) = %v, want an error", in, v)
		}
	}
	if s := (Version{1, 2, 3, 4}).String(); s != "1.2.3+4" {
		t.Errorf("String = %q", s)
	}
	if !(Version{1, 2, 3, 4}).Less(Version{1, 3, 0, 0}) || (Version{2, 0, 0, 0}).Less(Version{1, 9, 9, 9}) {
		t.Error("Less")
	}
}

func TestAutoSecurityCounter(t *testing.T) {
	if got := AutoSecurityCounter(Version{1, 2, 3, 4}); got != 0x01020003 {
		t.Errorf("got %#x", got)
	}
	if got := AutoSecurityCounter(Version{255, 255, 65535, 7}); got != 0xffffffff {
		t.Errorf("got %#x", got)
	}
}

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]uint64{"0": 0, "32": 32, "0x200": 0x200, "0X1f": 0x1f, "0o17": 15, "0b101": 5, "1_000": 1000, "00": 0} {
		if got, err := ParseNumber(in); err != nil || got != want {
			t.Errorf("ParseNumber(%q) = %d, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "010", "0x", "abc", "-1", "1.5", "0xg"} {
		if _, err := ParseNumber(in); err == nil {
			t.Errorf("ParseNumber(%q): want an error", in)
		}
	}
}

func TestTrailerSize(t *testing.T) {
	for _, c := range []struct {
		o    TrailerOptions
		want int
	}{
		{TrailerOptions{}, 128*3*1 + 4*8 + 16},                    // 432
		{TrailerOptions{Align: 1}, 432},                           //
		{TrailerOptions{Align: 2}, 128*3*2 + 48},                  // 816
		{TrailerOptions{Align: 4}, 1584},                          //
		{TrailerOptions{Align: 8}, 3120},                          // the spec's number
		{TrailerOptions{Align: 16}, 128*3*16 + 4*16 + 16},         // max-align follows align
		{TrailerOptions{Align: 32}, 128*3*32 + 4*32 + 32},         // 12448
		{TrailerOptions{Align: 4, MaxAlign: 32}, 1536 + 128 + 32}, //
		{TrailerOptions{Align: 8, MaxSectors: 16}, 16*3*8 + 48},   //
		{TrailerOptions{OverwriteOnly: true}, 2*8 + 16},           // 32
		{TrailerOptions{Align: 4, OverwriteOnly: true}, 32},       // align does not matter
		{TrailerOptions{Align: 32, OverwriteOnly: true}, 2*32 + 32},
		{TrailerOptions{MaxAlign: 16, OverwriteOnly: true}, 2*16 + 16},
	} {
		got, err := TrailerSize(c.o)
		if err != nil || got != c.want {
			t.Errorf("TrailerSize(%+v) = %d, %v; want %d", c.o, got, err, c.want)
		}
	}
	for _, o := range []TrailerOptions{{Align: 3}, {Align: 64}, {MaxAlign: 4}, {MaxAlign: 64}, {MaxSectors: -1}} {
		if _, err := TrailerSize(o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("TrailerSize(%+v): %v, want ErrBadOptions", o, err)
		}
	}
}

func TestTrailerMagicAndLayout(t *testing.T) {
	if m := TrailerMagic(8); !bytes.Equal(m, []byte{0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79, 0x80}) {
		t.Errorf("magic for 8: % x", m)
	}
	if m := TrailerMagic(32); !bytes.Equal(m, []byte{0x20, 0x00, 0x2d, 0xe1, 0x5d, 0x29, 0x41, 0x0b, 0x8d, 0x77, 0x67, 0x9c, 0x11, 0x0f, 0x1f, 0x8a}) {
		t.Errorf("magic for 32: % x", m)
	}
	for _, a := range []int{8, 16, 32} {
		if got, ok := MagicMaxAlign(TrailerMagic(a)); !ok || got != a {
			t.Errorf("MagicMaxAlign(TrailerMagic(%d)) = %d, %v", a, got, ok)
		}
	}
	if _, ok := MagicMaxAlign(make([]byte, 16)); ok {
		t.Error("zeros accepted as a magic")
	}
	bad := TrailerMagic(16)
	bad[0] = 3 // not a power of two
	if _, ok := MagicMaxAlign(bad); ok {
		t.Error("alignment 3 accepted")
	}
	want := map[int]TrailerLayout{
		8:  {8, -16, -24, -32, -40, -48},
		16: {16, -16, -32, -48, -64, -80},
		32: {32, -16, -64, -96, -128, -160},
	}
	for a, w := range want {
		if got := Layout(a); got != w {
			t.Errorf("Layout(%d) = %+v, want %+v", a, got, w)
		}
	}
}

// The layout of a signed image, byte by byte.
func TestSignLayout(t *testing.T) {
	k := goldenKey()
	payload := mcuboottest.Payload(1000)
	img, err := Sign(payload, k, SignOptions{Version: Version{1, 2, 3, 4}, HeaderSize: 0x200, PadHeader: true,
		SlotSize: 0x10000, SecurityCounter: u32(0x01020003), LoadAddr: 0x20001000})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// Header.
	wantHdr := []byte{
		0x3d, 0xb8, 0xf3, 0x96, // magic
		0x00, 0x10, 0x00, 0x20, // load address
		0x00, 0x02, // hdr_size
		0x0c, 0x00, // protected TLV size: info 4 + SEC_CNT 8
		0xe8, 0x03, 0x00, 0x00, // img_size 1000
		0x20, 0x00, 0x00, 0x00, // flags: RAM_LOAD
		1, 2, 3, 0, 4, 0, 0, 0, // version
		0, 0, 0, 0, // pad
	}
	if !bytes.Equal(img[:32], wantHdr) {
		t.Errorf("header\n got % x\nwant % x", img[:32], wantHdr)
	}
	for i := 32; i < 0x200; i++ {
		if img[i] != 0xff {
			t.Fatalf("header padding byte at 0x%x is 0x%02x, want 0xff (erased)", i, img[i])
		}
	}
	if !bytes.Equal(img[0x200:0x200+1000], payload) {
		t.Error("body differs from the payload")
	}
	// Protected TLVs: info, SEC_CNT.
	p := 0x200 + 1000
	wantProt := []byte{0x08, 0x69, 0x0c, 0x00, 0x50, 0x00, 0x04, 0x00, 0x03, 0x00, 0x02, 0x01}
	if !bytes.Equal(img[p:p+12], wantProt) {
		t.Errorf("protected TLVs % x, want % x", img[p:p+12], wantProt)
	}
	// Unprotected: info, SHA256, KEYHASH, ED25519.
	u := p + 12
	if le.Uint16(img[u:]) != 0x6907 || int(le.Uint16(img[u+2:])) != 4+(4+32)+(4+32)+(4+64) {
		t.Errorf("TLV info % x", img[u:u+4])
	}
	digest := sha256.Sum256(img[:u])
	if le.Uint16(img[u+4:]) != 0x10 || le.Uint16(img[u+6:]) != 32 || !bytes.Equal(img[u+8:u+40], digest[:]) {
		t.Error("SHA256 TLV")
	}
	spki, _ := x509.MarshalPKIXPublicKey(k.Public())
	kh := sha256.Sum256(spki)
	if le.Uint16(img[u+40:]) != 0x01 || le.Uint16(img[u+42:]) != 32 || !bytes.Equal(img[u+44:u+76], kh[:]) {
		t.Error("KEYHASH TLV")
	}
	if le.Uint16(img[u+76:]) != 0x24 || le.Uint16(img[u+78:]) != 64 {
		t.Error("ED25519 TLV header")
	}
	if err := image.VerifyMessage(k.Public(), digest[:], img[u+80:u+144]); err != nil {
		t.Errorf("the signature is not Ed25519 over the SHA-256 digest: %v", err)
	}
	if len(img) != u+144 {
		t.Errorf("image is %d bytes, want %d (no padding without --pad)", len(img), u+144)
	}

	parsed, err := Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	if parsed.Header.Version != (Version{1, 2, 3, 4}) || parsed.HashedSize() != u || parsed.End() != len(img) || parsed.Trailer != nil || parsed.Padding != 0 {
		t.Errorf("Parse: %+v", parsed)
	}
	if got := tlvTypes(parsed.Protected); !reflect.DeepEqual(got, []uint16{TLVSecCnt}) {
		t.Errorf("protected TLVs %v", got)
	}
	if got := tlvTypes(&parsed.Unprotected); !reflect.DeepEqual(got, []uint16{TLVSHA256, TLVKeyHash, TLVEd25519}) {
		t.Errorf("TLVs %v", got)
	}
	if sc, ok := parsed.SecurityCounter(); !ok || sc != 0x01020003 {
		t.Errorf("SecurityCounter = %#x, %v", sc, ok)
	}
	if !reflect.DeepEqual(parsed.FlagNames, []string{"RAM_LOAD"}) {
		t.Errorf("flags %v", parsed.FlagNames)
	}
}

// The hash and signature algorithms and TLVs per key type.
func TestSignKeyTypes(t *testing.T) {
	for _, c := range []struct {
		kt       image.KeyType
		hash     uint16
		hashLen  int
		sig      uint16
		sigLen   int // 0: variable (DER)
		fullLen  int
		fullType string
	}{
		{image.Ed25519, TLVSHA256, 32, TLVEd25519, 64, 44, "SPKI"},
		{image.ECDSAP256, TLVSHA256, 32, TLVECDSASig, 0, 91, "SPKI"},
		{image.ECDSAP384, TLVSHA384, 48, TLVECDSASig, 0, 120, "SPKI"},
		{image.RSA2048, TLVSHA256, 32, TLVRSA2048, 256, 270, "PKCS1"},
		{image.RSA3072, TLVSHA256, 32, TLVRSA3072, 384, 398, "PKCS1"},
	} {
		t.Run(string(c.kt), func(t *testing.T) {
			k := testKey(t, c.kt)
			for _, format := range []KeyFormat{KeyFormatHash, KeyFormatFull} {
				data, err := Sign(mcuboottest.Payload(500), k, SignOptions{Version: Version{1, 0, 0, 0}, PadHeader: true, PublicKeyFormat: format})
				if err != nil {
					t.Fatal(err)
				}
				img, err := Verify(data, k.Public())
				if err != nil {
					t.Fatalf("%s: Verify: %v", format, err)
				}
				r := img.Unprotected.Records
				if len(r) != 3 || r[0].Type != c.hash || r[0].Len != c.hashLen || r[2].Type != c.sig || (c.sigLen != 0 && r[2].Len != c.sigLen) {
					t.Errorf("%s: TLVs %+v", format, r)
				}
				if format == KeyFormatHash && (r[1].Type != TLVKeyHash || r[1].Len != c.hashLen) {
					t.Errorf("KEYHASH %+v", r[1])
				}
				if format == KeyFormatFull && (r[1].Type != TLVPubKey || r[1].Len != c.fullLen) {
					t.Errorf("PUBKEY (%s) %+v", c.fullType, r[1])
				}
			}
		})
	}
}

func TestSignPadConfirm(t *testing.T) {
	payload := mcuboottest.Payload(100)
	base := SignOptions{Version: Version{1, 0, 0, 0}, PadHeader: true, SlotSize: 0x1000, Align: 4}
	unpadded, err := Sign(payload, goldenKey(), base)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		mod     func(*SignOptions)
		erased  byte
		magic   []byte
		imageOK int // offset from the end, 0: none set
	}{
		{"pad", func(o *SignOptions) { o.Pad = true }, 0xff, TrailerMagic(8), 0},
		{"test", func(o *SignOptions) { o.Test = true }, 0xff, TrailerMagic(8), 0},
		{"confirm", func(o *SignOptions) { o.Confirm = true }, 0xff, TrailerMagic(8), -24},
		{"confirm-erased0", func(o *SignOptions) { o.Confirm = true; o.ErasedZero = true }, 0x00, TrailerMagic(8), -24},
		{"confirm-maxalign16", func(o *SignOptions) { o.Confirm = true; o.MaxAlign = 16 }, 0xff, TrailerMagic(16), -32},
		{"confirm-align32", func(o *SignOptions) { o.Confirm = true; o.Align = 32; o.MaxSectors = 8 }, 0xff, TrailerMagic(32), -64},
		// imgtool does not write image_ok for overwrite-only images.
		{"confirm-overwrite-only", func(o *SignOptions) { o.Confirm = true; o.OverwriteOnly = true }, 0xff, TrailerMagic(8), 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.mod(&o)
			img, err := Sign(payload, goldenKey(), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(img) != 0x1000 {
				t.Fatalf("padded image is 0x%x bytes, want the slot size 0x1000", len(img))
			}
			n := len(unpadded)
			if c.erased == 0 {
				// -R 0 also changes the header padding, so only the structure is comparable.
				n = 0
			} else if !bytes.Equal(img[:n], unpadded) {
				t.Fatal("padding changed the image itself")
			}
			p, err := Parse(img)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				n = p.End()
			}
			for i := n; i < len(img)-16; i++ {
				want := c.erased
				if c.imageOK != 0 && i == len(img)+c.imageOK {
					want = FlagSet
				}
				if img[i] != want {
					t.Fatalf("byte at 0x%x (end%d) is 0x%02x, want 0x%02x", i, i-len(img), img[i], want)
				}
			}
			if !bytes.Equal(img[len(img)-16:], c.magic) {
				t.Errorf("magic % x", img[len(img)-16:])
			}
			if p.Trailer == nil || p.Trailer.Confirmed() != (c.imageOK != 0) || p.Padding != len(img)-p.End() {
				t.Errorf("trailer %+v", p.Trailer)
			}
			if _, err := Verify(img, goldenKey().Public()); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestSignErrors(t *testing.T) {
	k := goldenKey()
	payload := mcuboottest.Payload(1000)
	img, _ := Sign(payload, k, SignOptions{PadHeader: true})
	tsize, _ := TrailerSize(TrailerOptions{})
	if _, err := Sign(payload, k, SignOptions{PadHeader: true, SlotSize: len(img) + tsize}); err != nil {
		t.Errorf("an image that fits exactly: %v", err)
	}
	_, err := Sign(payload, k, SignOptions{PadHeader: true, SlotSize: len(img) + tsize - 1})
	want := fmt.Sprintf("image size (0x%x) + trailer (0x%x) exceeds requested size 0x%x", len(img), tsize, len(img)+tsize-1)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), want) || len(img) != 0x498 || tsize != 0x1b0 {
		t.Errorf("too large: %v", err)
	}
	if _, err := Sign(payload, k, SignOptions{HeaderSize: 32}); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), "does not start with zeros") {
		t.Errorf("header not zero: %v", err)
	}
	if _, err := Sign(make([]byte, 10), k, SignOptions{HeaderSize: 32}); !errors.Is(err, ErrBadInput) {
		t.Errorf("input shorter than the header: %v", err)
	}
	if _, err := Sign(make([]byte, 100), k, SignOptions{HeaderSize: 32}); err != nil {
		t.Errorf("zero header without --pad-header: %v", err)
	}
	for name, o := range map[string]SignOptions{
		"align 3":           {PadHeader: true, Align: 3},
		"max-align 4":       {PadHeader: true, MaxAlign: 4},
		"header 31":         {PadHeader: true, HeaderSize: 31},
		"header 65536":      {PadHeader: true, HeaderSize: 65536},
		"load and rom":      {PadHeader: true, LoadAddr: 1, ROMFixed: 2},
		"pad without slot":  {PadHeader: true, Pad: true},
		"ed25519 sha384":    {PadHeader: true, Hash: 384},
		"pure with hash":    {PadHeader: true, Pure: true, Hash: 512},
		"key format":        {PadHeader: true, PublicKeyFormat: "pem"},
		"custom tlv type":   {PadHeader: true, CustomTLVs: []CustomTLV{{0x50, nil}}},
		"custom tlv twice":  {PadHeader: true, CustomTLVs: []CustomTLV{{0xa0, nil}, {0xa0, nil}}},
		"boot record long":  {PadHeader: true, BootRecord: "0123456789abc"},
		"cid without vid":   {PadHeader: true, CID: "some-name"},
		"protected too big": {PadHeader: true, CustomTLVs: []CustomTLV{{0xa0, make([]byte, 40000)}, {0xa1, make([]byte, 40000)}}},
	} {
		if _, err := Sign(payload, k, o); !errors.Is(err, ErrBadOptions) {
			t.Errorf("%s: %v, want ErrBadOptions", name, err)
		}
	}
	if _, err := Sign(payload, testKey(t, image.ECDSAP256), SignOptions{PadHeader: true, Pure: true}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("pure with ECDSA: %v", err)
	}
	if _, err := Sign(payload, testKey(t, image.ECDSAP256), SignOptions{PadHeader: true, Hash: 512}); !errors.Is(err, ErrBadOptions) {
		t.Errorf("P-256 with SHA-512: %v", err)
	}
}

func TestVerifyFailures(t *testing.T) {
	k := goldenKey()
	good, err := Sign(mcuboottest.Payload(1000), k, SignOptions{Version: v1234, HeaderSize: 0x80, PadHeader: true, SecurityCounter: u32(5), SlotSize: 0x1000, Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	img, err := Verify(good, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(good, k); err != nil {
		t.Errorf("Verify with the private key: %v", err)
	}
	if _, err := Verify(good, nil); err != nil {
		t.Errorf("Verify of the hash alone: %v", err)
	}
	sig := img.Find(TLVEd25519)
	keyhash := img.Find(TLVKeyHash)
	hashTLV := img.Find(TLVSHA256)
	unsigned, _ := Sign(mcuboottest.Payload(1000), nil, SignOptions{PadHeader: true})
	other, _ := Sign(mcuboottest.Payload(1000), otherEd25519Key(), SignOptions{PadHeader: true})
	le := binary.LittleEndian
	setU16 := func(b []byte, off int, v uint16) []byte {
		c := bytes.Clone(b)
		le.PutUint16(c[off:], v)
		return c
	}
	for _, c := range []struct {
		name string
		data []byte
		key  any
		want error
		msg  string
	}{
		{"magic", flip(good, 0), k.Public(), ErrBadMagic, "offset 0x0"},
		{"big-endian", append([]byte{0x96, 0xf3, 0xb8, 0x3d}, good[4:]...), k.Public(), ErrBadMagic, "big-endian"},
		{"empty", nil, k.Public(), ErrTruncated, "0 bytes"},
		{"short header", good[:20], k.Public(), ErrTruncated, "32-byte header"},
		{"truncated body", good[:0x80+500], k.Public(), ErrTruncated, "img_size"},
		{"truncated TLVs", good[:img.End()-1], k.Public(), ErrTruncated, "TLV area"},
		{"header byte", flip(good, 21), k.Public(), ErrHashMismatch, "SHA256 TLV at offset"},
		{"header padding", flip(good, 0x40), k.Public(), ErrHashMismatch, "SHA256"},
		{"body", flip(good, 0x80+999), k.Public(), ErrHashMismatch, "SHA256"},
		{"protected TLV", flip(good, img.Protected.Records[0].Offset+4), k.Public(), ErrHashMismatch, "SHA256"},
		{"hash TLV", flip(good, hashTLV.Offset+4), k.Public(), ErrHashMismatch, "SHA256"},
		{"signature", flip(good, sig.Offset+4+10), k.Public(), ErrBadSignature, "offset"},
		{"keyhash", flip(good, keyhash.Offset+4), k.Public(), ErrKeyMismatch, "KEYHASH"},
		{"wrong key", good, otherEd25519Key().Public(), ErrKeyMismatch, "not for this ed25519 key"},
		{"wrong key type", good, testKey(t, image.ECDSAP256).Public(), ErrKeyMismatch, "ecdsa-p256"},
		{"hash for other key type", good, testKey(t, image.ECDSAP384).Public(), ErrKeyMismatch, "SHA384"},
		{"unsigned", unsigned, k.Public(), ErrKeyMismatch, "not signed"},
		{"other key's image", other, k.Public(), ErrKeyMismatch, "KEYHASH"},
		{"TLV info magic", setU16(good, img.Unprotected.Offset, 0x1234), k.Public(), ErrMalformed, "TLV area info magic"},
		{"protected size", setU16(good, 10, 0), k.Public(), ErrMalformed, "protected"},
		{"protected size 2", setU16(good, 10, 16), k.Public(), ErrMalformed, "protected_tlv_size"},
		{"TLV overrun", setU16(good, sig.Offset+2, 65), k.Public(), ErrMalformed, "overrunning"},
		{"TLV area short", setU16(good, img.Unprotected.Offset+2, 3), k.Public(), ErrMalformed, "shorter than its own info header"},
		{"hdr_size", setU16(good, 8, 16), k.Public(), ErrMalformed, "hdr_size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Verify(c.data, c.key)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Verify = %v; want %v mentioning %q", err, c.want, c.msg)
			}
		})
	}
	// The sentinels are distinct; ErrBadSignature is also image.ErrBadSignature.
	_, err = Verify(flip(good, sig.Offset+4+10), k.Public())
	if !errors.Is(err, image.ErrBadSignature) || errors.Is(err, ErrKeyMismatch) || errors.Is(err, ErrHashMismatch) {
		t.Errorf("bad signature error %v", err)
	}
	sentinels := []error{ErrBadMagic, ErrTruncated, ErrMalformed, ErrHashMismatch, ErrKeyMismatch, ErrBadSignature, ErrTooLarge, ErrBadInput, ErrBadOptions}
	for i, a := range sentinels {
		for j, b := range sentinels {
			if i != j && errors.Is(a, b) {
				t.Errorf("%v matches %v", a, b)
			}
		}
	}
}

// A padded slot's trailer is read back whatever the bootloader wrote into it.
func TestParseTrailerFields(t *testing.T) {
	img, err := Sign(mcuboottest.Payload(100), goldenKey(), SignOptions{PadHeader: true, SlotSize: 0x800, Align: 8, MaxSectors: 8, Pad: true})
	if err != nil {
		t.Fatal(err)
	}
	l := Layout(8)
	end := len(img)
	img[end+l.ImageOK] = FlagSet
	img[end+l.CopyDone] = FlagSet
	img[end+l.SwapInfo] = 0x13 // image 1, perm
	binary.LittleEndian.PutUint32(img[end+l.SwapSize:], 0x1234)
	p, err := Parse(img)
	if err != nil {
		t.Fatal(err)
	}
	tr := p.Trailer
	if tr == nil || tr.Offset != end-48 || tr.MaxAlign != 8 || !tr.Confirmed() || tr.CopyDone != 1 || tr.SwapType() != SwapTypePerm || tr.ImageNumber() != 1 || tr.SwapSize != 0x1234 {
		t.Errorf("trailer %+v", tr)
	}
	// Padding without a magic: no trailer, and the text dump says so.
	img[end-1] ^= 0xff
	if p, err = Parse(img); err != nil || p.Trailer != nil || p.Padding == 0 {
		t.Errorf("Parse without magic: %+v, %v", p, err)
	}
	var buf bytes.Buffer
	if err := p.WriteText(&buf); err != nil || !strings.Contains(buf.String(), "no valid trailer magic") {
		t.Errorf("WriteText: %v\n%s", err, buf.String())
	}
}

func TestIsImage(t *testing.T) {
	good, _ := Sign(mcuboottest.Payload(10), nil, SignOptions{PadHeader: true})
	if !IsImage(good) || !IsImage(good[:4]) {
		t.Error("IsImage rejects an image")
	}
	for _, b := range [][]byte{nil, good[:3], {0x96, 0xf3, 0xb8, 0x3d}, {0x3c, 0xb8, 0xf3, 0x96}, []byte("hsqs")} {
		if IsImage(b) {
			t.Errorf("IsImage(% x)", b)
		}
	}
	if _, err := Parse([]byte{0x3c, 0xb8, 0xf3, 0x96, 0, 0, 0, 0}); !errors.Is(err, ErrBadMagic) || !strings.Contains(err.Error(), "legacy v1") {
		t.Errorf("v1 magic: %v", err)
	}
}

// The committed golden images are imgtool 2.4.0's output (see TestInteropGolden); Sign must
// reproduce them byte for byte, and Parse, Verify and the dumps must read them.
func TestGolden(t *testing.T) {
	keyPEM, err := os.ReadFile("testdata/golden-ed25519.pem")
	if err != nil {
		t.Fatal(err)
	}
	k, err := image.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !goldenKey().Equal(k) {
		t.Fatal("testdata/golden-ed25519.pem is not the golden key")
	}
	for _, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			want, err := os.ReadFile(filepath.Join("testdata", "golden", c.name+".bin"))
			if err != nil {
				t.Fatal(err)
			}
			key := k
			if c.unsigned {
				key = nil
			}
			got, err := Sign(goldenInput(c), key, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Sign differs from imgtool's output: %s", firstDiff(got, want))
			}
			pub := k.Public()
			if c.unsigned {
				pub = nil
			}
			img, err := Verify(want, pub)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if img.Header.Version != c.opts.Version {
				t.Errorf("version %v", img.Header.Version)
			}
			var text bytes.Buffer
			if err := img.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, r := range append(img.Unprotected.Records, protectedRecords(img)...) {
				if !strings.Contains(text.String(), r.Name+" (0x") {
					t.Errorf("text dump lacks %s:\n%s", r.Name, text.String())
				}
			}
			if (img.Trailer != nil) != strings.Contains(text.String(), "Image trailer") {
				t.Errorf("text dump and trailer disagree:\n%s", text.String())
			}
			j, err := json.Marshal(img)
			if err != nil {
				t.Fatal(err)
			}
			var back Image
			if err := json.Unmarshal(j, &back); err != nil || !reflect.DeepEqual(&back, img) {
				t.Errorf("JSON round trip: %v\n%s", err, j)
			}
		})
	}
}

func protectedRecords(img *Image) []TLV {
	if img.Protected == nil {
		return nil
	}
	return img.Protected.Records
}

// The protected TLVs of the protected-tlvs golden case, decoded.
func TestProtectedTLVContents(t *testing.T) {
	var c goldenCase
	for _, g := range goldenCases {
		if g.name == "protected-tlvs" {
			c = g
		}
	}
	data, err := Sign(goldenInput(c), goldenKey(), c.opts)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{TLVSecCnt, TLVBootRecord, TLVDependency, TLVDependency, TLVUUIDVID, TLVUUIDCID, 0xa0, 0x1234}
	if got := tlvTypes(img.Protected); !reflect.DeepEqual(got, want) {
		t.Fatalf("protected TLVs %x, want %x", got, want)
	}
	r := img.Protected.Records
	if !bytes.Equal(r[2].Data, []byte{1, 0, 0, 0, 2, 3, 4, 0, 5, 0, 0, 0}) {
		t.Errorf("DEPENDENCY % x", r[2].Data)
	}
	// uuid.uuid5(uuid.NAMESPACE_DNS, "example.com")
	if got := Hex(r[4].Data); string(mustText(got)) != "cfbff0d193755685968c48ce8b15ae17" {
		t.Errorf("UUID_VID %s", mustText(got))
	}
	if string(r[6].Data) != "\x01\x02" || string(r[7].Data) != "hello, world" {
		t.Errorf("custom TLVs %q %q", r[6].Data, r[7].Data)
	}
	if !bytes.HasPrefix(r[1].Data, []byte{0xa5, 0x01, 0x64, 'C', 'o', 'F', 'M', 0x04, 0x65, '4', '.', '5', '.', '6', 0x05, 0x58, 0x20}) {
		t.Errorf("BOOT_RECORD % x", r[1].Data)
	}
}

func mustText(h Hex) []byte {
	b, _ := h.MarshalText()
	return b
}

func TestParseDependenciesAndCustomTLV(t *testing.T) {
	d, err := ParseDependencies("(1,2.3.4+5), (2, 1.0)")
	if err != nil || !reflect.DeepEqual(d, []Dependency{{1, Version{2, 3, 4, 5}}, {2, Version{1, 0, 0, 0}}}) {
		t.Errorf("ParseDependencies = %v, %v", d, err)
	}
	for _, s := range []string{"", "1,2", "(1,2", "(256,1.0)", "(1,01.0)"} {
		if _, err := ParseDependencies(s); err == nil {
			t.Errorf("ParseDependencies(%q): want an error", s)
		}
	}
	c, err := ParseCustomTLV("0xa0", "0x0a0B")
	if err != nil || c.Type != 0xa0 || !bytes.Equal(c.Value, []byte{0x0a, 0x0b}) {
		t.Errorf("ParseCustomTLV = %+v, %v", c, err)
	}
	if c, err := ParseCustomTLV("200", "text"); err != nil || c.Type != 200 || string(c.Value) != "text" {
		t.Errorf("ParseCustomTLV = %+v, %v", c, err)
	}
	for _, a := range [][2]string{{"0x50", "x"}, {"0x9f", "x"}, {"0xffff", "x"}, {"0xa0", "0x123"}, {"0xa0", "0xzz"}, {"ten", "x"}} {
		if _, err := ParseCustomTLV(a[0], a[1]); err == nil {
			t.Errorf("ParseCustomTLV(%q, %q): want an error", a[0], a[1])
		}
	}
}

// Every prefix and many single-byte corruptions of real images parse or fail cleanly.
func TestParseRobust(t *testing.T) {
	k := goldenKey()
	img, err := Sign(mcuboottest.Payload(300), k, SignOptions{Version: v1234, PadHeader: true, SecurityCounter: u32(1), SlotSize: 0x800, MaxSectors: 4, Confirm: true})
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n <= len(img); n++ {
		p, err := Verify(img[:n], k.Public())
		if n < len(img) && n >= 0 && err == nil && p.Trailer != nil {
			t.Errorf("prefix %d verifies with a trailer", n)
		}
	}
	for i := 0; i < len(img); i += 3 {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(img)
			c[i] ^= x
			Verify(c, k.Public())
			if p, err := Parse(c); err == nil {
				var b bytes.Buffer
				p.WriteText(&b)
			}
		}
	}
}
