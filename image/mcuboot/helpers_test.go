package mcuboot

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"sync"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
)

var (
	keyMu    sync.Mutex
	keyCache = map[image.KeyType]crypto.Signer{}
)

// testKey returns a key of type kt, generated once per test binary (RSA generation is slow).
func testKey(t testing.TB, kt image.KeyType) crypto.Signer {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[kt]; ok {
		return k
	}
	k, err := image.GenerateKey(kt, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[kt] = k
	return k
}

// goldenKey is the fixed ed25519 key of the golden images (testdata/golden-ed25519.pem holds
// the same key for imgtool).
func goldenKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte("aduflash mcuboot golden key seed"))
}

// otherEd25519Key is a second fixed ed25519 key, for wrong-key tests.
func otherEd25519Key() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte("aduflash mcuboot another key....")[:32])
}

func u32(v uint32) *uint32 { return &v }

func mustVersion(t testing.TB, s string) Version {
	t.Helper()
	v, err := ParseVersion(s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// goldenCase is one set of sign options, spelled both as imgtool flags and as SignOptions.
// The golden images in testdata/golden/NAME.bin are imgtool 2.4.0's output for the golden key
// and goldenPayload; TestGolden checks Sign against them and the interop test checks them
// against a live imgtool.
type goldenCase struct {
	name string
	args []string // imgtool sign flags, without -k, INFILE and OUTFILE
	opts SignOptions
	// zeroHeader: the input starts with opts.HeaderSize zero bytes (no --pad-header).
	zeroHeader bool
	unsigned   bool
}

// goldenPayload is the application binary of the golden images.
func goldenPayload() []byte { return mcuboottest.Payload(1000) }

func goldenInput(c goldenCase) []byte {
	p := goldenPayload()
	if c.zeroHeader {
		p = append(make([]byte, c.opts.HeaderSize), p...)
	}
	return p
}

var v1234 = Version{1, 2, 3, 4}

var goldenCases = []goldenCase{
	{name: "basic",
		args: []string{"-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x10000"},
		opts: SignOptions{Version: v1234, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x10000}},
	{name: "seccnt-auto",
		args: []string{"-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x10000", "-s", "auto"},
		opts: SignOptions{Version: v1234, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x10000, SecurityCounter: u32(0x01020003)}},
	{name: "seccnt-number-zero-header",
		args: []string{"-v", "0.0.1", "-H", "32", "-S", "0x10000", "-s", "0x1234"},
		opts: SignOptions{Version: Version{0, 0, 1, 0}, HeaderSize: 32, SlotSize: 0x10000, SecurityCounter: u32(0x1234)}, zeroHeader: true},
	{name: "pad-align4",
		args: []string{"-v", "2.0.0", "-H", "0x100", "--pad-header", "-S", "0x1000", "-M", "32", "--align", "4", "--pad"},
		opts: SignOptions{Version: Version{2, 0, 0, 0}, HeaderSize: 0x100, PadHeader: true, SlotSize: 0x1000, MaxSectors: 32, Align: 4, Pad: true}},
	{name: "confirm-align8",
		args: []string{"-v", "2.0.0+9", "-H", "0x20", "--pad-header", "-S", "0x1000", "-M", "16", "--align", "8", "--confirm"},
		opts: SignOptions{Version: Version{2, 0, 0, 9}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x1000, MaxSectors: 16, Align: 8, Confirm: true}},
	{name: "confirm-maxalign32",
		args: []string{"-v", "3.1.4", "-H", "0x200", "--pad-header", "-S", "0x1000", "-M", "4", "--align", "32", "--max-align", "32", "--confirm"},
		opts: SignOptions{Version: Version{3, 1, 4, 0}, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x1000, MaxSectors: 4, Align: 32, MaxAlign: 32, Confirm: true}},
	{name: "test-align16",
		args: []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x1000", "-M", "8", "--align", "16", "--test"},
		opts: SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x1000, MaxSectors: 8, Align: 16, Test: true}},
	{name: "overwrite-only-confirm",
		args: []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x800", "--overwrite-only", "--confirm"},
		opts: SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x800, OverwriteOnly: true, Confirm: true}},
	{name: "erased0-pad",
		args: []string{"-v", "1.0.0", "-H", "0x80", "--pad-header", "-S", "0x1000", "-M", "8", "-R", "0", "--confirm"},
		opts: SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x80, PadHeader: true, SlotSize: 0x1000, MaxSectors: 8, ErasedZero: true, Confirm: true}},
	{name: "load-addr",
		args: []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "-L", "0x20000000"},
		opts: SignOptions{Version: Version{1, 2, 3, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, LoadAddr: 0x20000000}},
	{name: "rom-fixed-non-bootable",
		args: []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "-F", "0x8020000", "--non-bootable"},
		opts: SignOptions{Version: Version{1, 2, 3, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, ROMFixed: 0x8020000, NonBootable: true}},
	{name: "public-key-full",
		args: []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--public-key-format", "full"},
		opts: SignOptions{Version: Version{1, 2, 3, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, PublicKeyFormat: KeyFormatFull}},
	{name: "sha512",
		args: []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--sha", "512"},
		opts: SignOptions{Version: Version{1, 2, 3, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, Hash: 512}},
	{name: "pure",
		args: []string{"-v", "1.2.3", "-H", "0x20", "--pad-header", "-S", "0x10000", "--pure", "-s", "7"},
		opts: SignOptions{Version: Version{1, 2, 3, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, Pure: true, SecurityCounter: u32(7)}},
	{name: "protected-tlvs",
		args: []string{"-v", "4.5.6+7", "-H", "0x20", "--pad-header", "-S", "0x10000", "-s", "auto",
			"-d", "(1,2.3.4+5), (2, 1.0)", "--boot-record", "CoFM", "--vid", "example.com", "--cid", "toaster-app",
			"--custom-tlv", "0xa0", "0x0102", "--custom-tlv", "0x1234", "hello, world"},
		opts: SignOptions{Version: Version{4, 5, 6, 7}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000, SecurityCounter: u32(0x04050006),
			Dependencies: []Dependency{{1, Version{2, 3, 4, 5}}, {2, Version{1, 0, 0, 0}}},
			BootRecord:   "CoFM", VID: "example.com", CID: "toaster-app",
			CustomTLVs: []CustomTLV{{0xa0, []byte{1, 2}}, {0x1234, []byte("hello, world")}}}},
	{name: "uuid-raw",
		args: []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x10000",
			"--vid", "12345678-1234-5678-1234-567812345678", "--cid", "00112233445566778899aabbccddeeff"},
		opts: SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000,
			VID: "12345678-1234-5678-1234-567812345678", CID: "00112233445566778899aabbccddeeff"}},
	{name: "unsigned",
		args: []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x10000"},
		opts: SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x10000}, unsigned: true},
}

// tlvTypes lists the types of an area's records.
func tlvTypes(a *TLVArea) []uint16 {
	if a == nil {
		return nil
	}
	var ts []uint16
	for _, r := range a.Records {
		ts = append(ts, r.Type)
	}
	return ts
}

func flip(b []byte, off int) []byte {
	c := bytes.Clone(b)
	c[off] ^= 0x01
	return c
}
