package mcuboot

// Interop tests against the real imgtool 2.4.0 (../shared/peers/imgtool-2.4.0, run with
// Debian's /usr/bin/python3). They skip when python3 or imgtool's modules are missing, unless
// ADUFLASH_REQUIRE_PEERS is set (CI), which turns the skip into a failure.

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot/mcuboottest"
	"github.com/aduflash/aduflash/internal/peers"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden/*.bin with a live imgtool")

const python = "/usr/bin/python3"

// needImgtool returns the path of imgtool.py, or skips (fails in CI) when imgtool cannot run.
func needImgtool(t *testing.T) string {
	t.Helper()
	return peers.Imgtool(t)[1]
}

// imgtool runs imgtool and returns its combined output and error.
func imgtool(t *testing.T, args ...string) (string, error) {
	t.Helper()
	p := needImgtool(t)
	out, err := exec.Command(python, append([]string{p}, args...)...).CombinedOutput()
	return string(out), err
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func privPEM(t *testing.T, k crypto.Signer) []byte {
	t.Helper()
	b, err := image.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubPEM(t *testing.T, k crypto.PublicKey) []byte {
	t.Helper()
	b, err := image.MarshalPublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// batchDriver runs many imgtool commands in one Python process, through imgtool's own click
// entry point (imgtool.main.imgtool, unmodified), so that the interpreter and cryptography load
// once instead of once per command. It reads a JSON list of argument lists on stdin and
// writes, per command, its exit code and everything it printed.
const batchDriver = `
import contextlib, io, json, sys, traceback
sys.path.insert(0, sys.argv[1])
import click
from imgtool.main import imgtool
real_stdout = sys.stdout
results = []
for argv in json.load(sys.stdin):
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            rv = imgtool.main(args=argv, prog_name="imgtool", standalone_mode=False)
            if isinstance(rv, int):
                code = rv
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except click.ClickException as e:
            e.show()
            code = e.exit_code
        except Exception:
            traceback.print_exc()
            code = 1
    results.append({"code": code, "output": out.getvalue()})
json.dump(results, real_stdout)
`

// batch collects imgtool commands for one run of batchDriver.
type batch struct{ calls [][]string }

// add queues a command and returns the index of its result.
func (b *batch) add(args ...string) int {
	b.calls = append(b.calls, args)
	return len(b.calls) - 1
}

type imgtoolResult struct {
	Args   []string `json:"-"`
	Code   int      `json:"code"`
	Output string   `json:"output"`
}

func (r imgtoolResult) mustOK(t *testing.T) {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("imgtool %s: exit %d\n%s", strings.Join(r.Args, " "), r.Code, r.Output)
	}
}

// validated reports whether `imgtool verify` accepted the image (exit 0 and its message).
func (r imgtoolResult) validated() bool {
	return r.Code == 0 && strings.Contains(r.Output, "Image was correctly validated")
}

// run runs the queued commands, in order, in one imgtool process.
func (b *batch) run(t *testing.T) []imgtoolResult {
	t.Helper()
	p := needImgtool(t)
	in, err := json.Marshal(b.calls)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", batchDriver, filepath.Dir(p))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("imgtool batch driver: %v\n%s", err, stderr.Bytes())
	}
	var res []imgtoolResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(b.calls) {
		t.Fatalf("imgtool batch driver: %d results for %d commands (%v)\n%s", len(res), len(b.calls), err, out)
	}
	for i := range res {
		res[i].Args = b.calls[i]
	}
	return res
}

// With the golden key, imgtool and Sign produce the same bytes for every golden case; the
// committed golden files are what imgtool produced (-update-golden rewrites them). dumpinfo
// and Parse agree on every golden image, and imgtool verify accepts them.
func TestInteropGolden(t *testing.T) {
	needImgtool(t)
	t.Parallel()
	dir := t.TempDir()
	key := writeFile(t, dir, "golden.pem", privPEM(t, goldenKey()))
	if *updateGolden {
		if err := os.WriteFile("testdata/golden-ed25519.pem", privPEM(t, goldenKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var b batch
	type job struct{ sign, dump, verify int }
	jobs := make([]job, len(goldenCases))
	for i, c := range goldenCases {
		in := writeFile(t, dir, c.name+".in", goldenInput(c))
		out := filepath.Join(dir, c.name+".imgtool.bin")
		args := []string{"sign"}
		if !c.unsigned {
			args = append(args, "-k", key)
		}
		args = append(args, c.args...)
		jobs[i].sign = b.add(append(args, in, out)...)
		jobs[i].dump = b.add("dumpinfo", "-f", "json", out)
		jobs[i].verify = -1
		if !c.unsigned {
			jobs[i].verify = b.add("verify", "-k", key, out)
		}
	}
	res := b.run(t)
	for i, c := range goldenCases {
		t.Run(c.name, func(t *testing.T) {
			res[jobs[i].sign].mustOK(t)
			out := filepath.Join(dir, c.name+".imgtool.bin")
			theirs := readFile(t, out)
			var k crypto.Signer = goldenKey()
			if c.unsigned {
				k = nil
			}
			ours, err := Sign(goldenInput(c), k, c.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, theirs) {
				t.Errorf("Sign differs from imgtool sign %s: %s", strings.Join(c.args, " "), firstDiff(ours, theirs))
			}
			if *updateGolden {
				if err := os.WriteFile(filepath.Join("testdata", "golden", c.name+".bin"), theirs, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if j := jobs[i].verify; j >= 0 && !res[j].validated() {
				t.Errorf("imgtool verify rejects the image: %s", res[j].Output)
			}
			if !c.unsigned {
				if _, err := Verify(theirs, goldenKey().Public()); err != nil {
					t.Errorf("Verify: %v", err)
				}
			}
			compareDumpinfo(t, res[jobs[i].dump], theirs)
		})
	}
}

func firstDiff(a, b []byte) string {
	if len(a) != len(b) {
		return fmt.Sprintf("lengths %d and %d", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("first difference at offset 0x%x: 0x%02x vs 0x%02x", i, a[i], b[i])
		}
	}
	return "equal"
}

// dumpinfo is the JSON `imgtool dumpinfo -f json` prints.
type dumpinfo struct {
	Header struct {
		Magic            uint32 `json:"magic"`
		LoadAddr         uint32 `json:"load_addr"`
		HdrSize          uint16 `json:"hdr_size"`
		ProtectedTLVSize uint16 `json:"protected_tlv_size"`
		ImgSize          uint32 `json:"img_size"`
		Flags            uint32 `json:"flags"`
		Version          string `json:"version"`
	} `json:"header"`
	TLVArea struct {
		HdrProt struct {
			Magic  uint16 `json:"magic"`
			TLVTot uint16 `json:"tlv_tot"`
		} `json:"tlv_hdr_prot"`
		Prot []dumpTLV `json:"tlvs_prot"`
		Hdr  struct {
			Magic  uint16 `json:"magic"`
			TLVTot uint16 `json:"tlv_tot"`
		} `json:"tlv_hdr"`
		TLVs []dumpTLV `json:"tlvs"`
	} `json:"tlv_area"`
	Trailer struct {
		Magic    *string `json:"magic"`
		ImageOK  *uint8  `json:"image_ok"`
		CopyDone *uint8  `json:"copy_done"`
		SwapInfo *uint8  `json:"swap_info"`
		SwapSize *uint32 `json:"swap_size"`
	} `json:"trailer"`
}

type dumpTLV struct {
	Type     uint16 `json:"type"`
	TypeName string `json:"type_name"`
	Len      int    `json:"len"`
	Data     string `json:"data"`
}

// compareDumpinfo checks that the output of `imgtool dumpinfo -f json` and Parse(data) agree
// on every fact: header fields, version, flags, TLV types, lengths and data, trailer fields.
func compareDumpinfo(t *testing.T, r imgtoolResult, data []byte) {
	t.Helper()
	r.mustOK(t)
	out := r.Output
	var d dumpinfo
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &d); err != nil {
		t.Fatalf("dumpinfo JSON: %v\n%s", err, out)
	}
	img, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	h := img.Header
	if d.Header.Magic != h.Magic || d.Header.LoadAddr != h.LoadAddr || d.Header.HdrSize != h.HeaderSize ||
		d.Header.ProtectedTLVSize != h.ProtectedTLVSize || d.Header.ImgSize != h.ImageSize ||
		d.Header.Flags != h.Flags || d.Header.Version != h.Version.String() {
		t.Errorf("header: dumpinfo %+v, Parse %+v", d.Header, h)
	}
	cmpTLVs := func(what string, theirs []dumpTLV, ours []TLV) {
		if len(theirs) != len(ours) {
			t.Errorf("%s: dumpinfo lists %d TLVs, Parse %d", what, len(theirs), len(ours))
			return
		}
		for i := range ours {
			o := ours[i]
			if theirs[i].Type != o.Type || theirs[i].TypeName != o.Name || theirs[i].Len != o.Len || theirs[i].Data != hex.EncodeToString(o.Data) {
				t.Errorf("%s TLV %d: dumpinfo %+v, Parse %+v", what, i, theirs[i], o)
			}
		}
	}
	if img.Protected != nil {
		if d.TLVArea.HdrProt.Magic != img.Protected.Magic || d.TLVArea.HdrProt.TLVTot != img.Protected.Size {
			t.Errorf("protected TLV info: dumpinfo %+v, Parse %x/%x", d.TLVArea.HdrProt, img.Protected.Magic, img.Protected.Size)
		}
		cmpTLVs("protected", d.TLVArea.Prot, img.Protected.Records)
	} else if len(d.TLVArea.Prot) != 0 {
		t.Errorf("dumpinfo lists protected TLVs, Parse none")
	}
	if d.TLVArea.Hdr.Magic != img.Unprotected.Magic || d.TLVArea.Hdr.TLVTot != img.Unprotected.Size {
		t.Errorf("TLV info: dumpinfo %+v, Parse %x/%x", d.TLVArea.Hdr, img.Unprotected.Magic, img.Unprotected.Size)
	}
	cmpTLVs("unprotected", d.TLVArea.TLVs, img.Unprotected.Records)
	tr := img.Trailer
	switch {
	case tr == nil && d.Trailer.Magic != nil && d.Trailer.ImageOK != nil:
		t.Errorf("dumpinfo shows a trailer, Parse none")
	case tr != nil && d.Trailer.ImageOK == nil:
		t.Errorf("Parse shows a trailer, dumpinfo none")
	case tr != nil:
		if *d.Trailer.Magic != hex.EncodeToString(tr.Magic) || *d.Trailer.ImageOK != tr.ImageOK || *d.Trailer.CopyDone != tr.CopyDone ||
			*d.Trailer.SwapInfo != tr.SwapInfo || *d.Trailer.SwapSize != tr.SwapSize {
			t.Errorf("trailer: dumpinfo magic %s image_ok %#x copy_done %#x swap_info %#x swap_size %#x, Parse %+v",
				*d.Trailer.Magic, *d.Trailer.ImageOK, *d.Trailer.CopyDone, *d.Trailer.SwapInfo, *d.Trailer.SwapSize, tr)
		}
	}
}

// Every key type, both directions: our images pass imgtool verify, imgtool's pass Verify, the
// two agree except for the (randomized) signature and are identical for ed25519, dumpinfo
// agrees with Parse, and tampered or wrong-key images fail in both tools. Keys come from
// imgtool keygen and from GenerateKey, and each tool signs with both.
func TestInteropKeyTypes(t *testing.T) {
	needImgtool(t)
	t.Parallel()
	for _, kt := range image.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			t.Parallel()
			interopKeyType(t, kt)
		})
	}
}

func interopKeyType(t *testing.T, kt image.KeyType) {
	dir := t.TempDir()
	ourKey := testKey(t, kt)
	ourKeyFile := writeFile(t, dir, "our-key.pem", privPEM(t, ourKey))
	ourPubFile := writeFile(t, dir, "our-key.pub.pem", pubPEM(t, ourKey.Public()))
	theirKeyFile := filepath.Join(dir, "imgtool-key.pem")
	hashFile := filepath.Join(dir, "imgtool-key.hash")

	// Phase 1: imgtool keygen, getpub, getpubhash.
	var b1 batch
	b1.add("keygen", "-t", string(kt), "-k", theirKeyFile)
	getpub := b1.add("getpub", "-e", "pem", "-k", theirKeyFile)
	getpubhash := b1.add("getpubhash", "-e", "raw", "-k", theirKeyFile, "-o", hashFile)
	r1 := b1.run(t)
	for _, r := range r1 {
		r.mustOK(t)
	}
	theirKey, err := image.ParsePrivateKeyPEM(readFile(t, theirKeyFile))
	if err != nil {
		t.Fatalf("the key of imgtool keygen: %v", err)
	}
	pemOut := r1[getpub].Output
	theirPubFile := writeFile(t, dir, "imgtool-key.pub.pem", []byte(pemOut))
	if pub, err := image.ParsePublicKeyPEM([]byte(pemOut)); err != nil {
		t.Fatalf("imgtool getpub -e pem: %v", err)
	} else if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(theirKey.Public()) {
		t.Fatal("imgtool getpub's key differs from keygen's")
	}
	// getpubhash is always SHA-256; it is the KEYHASH of images with a SHA-256 hash.
	r1[getpubhash].mustOK(t)
	if kh, err := KeyHash(theirKey.Public(), 256); err != nil || !bytes.Equal(kh, readFile(t, hashFile)) {
		t.Errorf("KeyHash %x (%v), imgtool getpubhash %x", kh, err, readFile(t, hashFile))
	}

	// Phase 2: imgtool signs with both keys; it verifies and dumps our images.
	payload := mcuboottest.Payload(3000)
	in := writeFile(t, dir, "app.bin", payload)
	type flagSet struct {
		name string
		args []string
		opts SignOptions
	}
	flagSets := []flagSet{
		{"plain", []string{"-v", "1.2.3+4", "-H", "0x200", "--pad-header", "-S", "0x20000", "-s", "auto"},
			SignOptions{Version: v1234, HeaderSize: 0x200, PadHeader: true, SlotSize: 0x20000, SecurityCounter: u32(0x01020003)}},
		{"confirm", []string{"-v", "1.2.3+4", "-H", "0x20", "--pad-header", "-S", "0x2000", "--align", "4", "-M", "16", "--confirm"},
			SignOptions{Version: v1234, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x2000, Align: 4, MaxSectors: 16, Confirm: true}},
		{"full-key", []string{"-v", "9.8.7", "-H", "0x20", "--pad-header", "-S", "0x20000", "--public-key-format", "full"},
			SignOptions{Version: Version{9, 8, 7, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x20000, PublicKeyFormat: KeyFormatFull}},
	}
	if kt == image.ECDSAP256 || kt == image.ECDSAP384 {
		flagSets = append(flagSets, flagSet{"pad-sig", []string{"-v", "1.0.0", "-H", "0x20", "--pad-header", "-S", "0x20000", "--pad-sig"},
			SignOptions{Version: Version{1, 0, 0, 0}, HeaderSize: 0x20, PadHeader: true, SlotSize: 0x20000, PadSig: true}})
	}
	type side struct {
		name             string
		key              crypto.Signer
		keyFile, pubFile string
	}
	sides := []side{{"imgtool-key", theirKey, theirKeyFile, theirPubFile}, {"our-key", ourKey, ourKeyFile, ourPubFile}}
	type job struct {
		name, oursFile, theirsFile string
		ours                       []byte
		side                       side
		sign, dumpOurs, verifyPub  int
		verifyPriv, dumpTheirs     int
	}
	var (
		jobs []*job
		b2   batch
	)
	for _, fs := range flagSets {
		for _, sd := range sides {
			j := &job{name: fs.name + "/" + sd.name, side: sd, verifyPriv: -1}
			j.ours, err = Sign(payload, sd.key, fs.opts)
			if err != nil {
				t.Fatalf("%s: Sign: %v", j.name, err)
			}
			j.oursFile = writeFile(t, dir, fs.name+"-"+sd.name+".ours.bin", j.ours)
			j.theirsFile = filepath.Join(dir, fs.name+"-"+sd.name+".imgtool.bin")
			j.sign = b2.add(append(append([]string{"sign", "-k", sd.keyFile}, fs.args...), in, j.theirsFile)...)
			j.verifyPub = b2.add("verify", "-k", sd.pubFile, j.oursFile)
			if fs.name == "plain" {
				j.verifyPriv = b2.add("verify", "-k", sd.keyFile, j.oursFile)
			}
			j.dumpOurs = b2.add("dumpinfo", "-f", "json", j.oursFile)
			jobs = append(jobs, j)
		}
	}
	r2 := b2.run(t)

	// Phase 3: imgtool dumps its own images and checks tampered and wrong-key ones.
	var b3 batch
	for _, j := range jobs {
		r2[j.sign].mustOK(t)
		j.dumpTheirs = b3.add("dumpinfo", "-f", "json", j.theirsFile)
	}
	orig := readFile(t, jobs[0].theirsFile) // plain, signed with imgtool's key
	img, err := Parse(orig)
	if err != nil {
		t.Fatal(err)
	}
	sig := img.Find(sigTLV(kt))
	if sig == nil || img.Protected == nil {
		t.Fatalf("imgtool's image lacks a signature or SEC_CNT: %v", tlvTypes(&img.Unprotected))
	}
	tampered := []struct {
		name    string
		data    []byte
		wantErr error
		imgtool string
		run     int
	}{
		{name: "body", data: flip(orig, 0x200+100), wantErr: ErrHashMismatch, imgtool: "Image has an invalid hash"},
		{name: "header", data: flip(orig, 20), wantErr: ErrHashMismatch, imgtool: "Image has an invalid hash"},
		{name: "seccnt", data: flip(orig, img.Protected.Records[0].Offset+TLVHeaderSize), wantErr: ErrHashMismatch, imgtool: "Image has an invalid hash"},
		{name: "signature", data: flip(orig, sig.Offset+TLVHeaderSize+sig.Len/2), wantErr: ErrBadSignature, imgtool: "No signature found for the given key"},
	}
	for i := range tampered {
		f := writeFile(t, dir, "tampered-"+tampered[i].name+".bin", tampered[i].data)
		tampered[i].run = b3.add("verify", "-k", theirPubFile, f)
	}
	// Wrong key of the same type, both ways round.
	wrong1 := b3.add("verify", "-k", ourPubFile, jobs[0].theirsFile)
	wrong2 := b3.add("verify", "-k", theirPubFile, jobs[1].oursFile)
	r3 := b3.run(t)

	for _, j := range jobs {
		if !r2[j.verifyPub].validated() {
			t.Errorf("%s: imgtool verify -k PUB rejects our image: %s", j.name, r2[j.verifyPub].Output)
		}
		if j.verifyPriv >= 0 && !r2[j.verifyPriv].validated() {
			t.Errorf("%s: imgtool verify -k PRIV rejects our image: %s", j.name, r2[j.verifyPriv].Output)
		}
		theirs := readFile(t, j.theirsFile)
		if _, err := Verify(theirs, j.side.key.Public()); err != nil {
			t.Errorf("%s: Verify rejects imgtool's image: %v", j.name, err)
		}
		if _, err := Verify(theirs, j.side.key); err != nil {
			t.Errorf("%s: Verify with the private key rejects imgtool's image: %v", j.name, err)
		}
		sameButSignature(t, j.name, kt, j.ours, theirs)
		if kt == image.Ed25519 && !bytes.Equal(j.ours, theirs) {
			t.Errorf("%s: ed25519 images differ: %s", j.name, firstDiff(j.ours, theirs))
		}
		compareDumpinfo(t, r2[j.dumpOurs], j.ours)
		compareDumpinfo(t, r3[j.dumpTheirs], theirs)
	}
	for _, c := range tampered {
		if _, err := Verify(c.data, theirKey.Public()); !errors.Is(err, c.wantErr) {
			t.Errorf("tampered %s: Verify = %v, want %v", c.name, err, c.wantErr)
		}
		if r := r3[c.run]; r.validated() || r.Code == 0 || !strings.Contains(r.Output, c.imgtool) {
			t.Errorf("tampered %s: imgtool verify exit %d %q, want failure %q", c.name, r.Code, r.Output, c.imgtool)
		}
	}
	if r := r3[wrong1]; r.validated() || r.Code == 0 || !strings.Contains(r.Output, "No signature found for the given key") {
		t.Errorf("wrong key: imgtool verify exit %d %q", r.Code, r.Output)
	}
	if _, err := Verify(orig, ourKey.Public()); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong key: Verify = %v, want ErrKeyMismatch", err)
	}
	if r := r3[wrong2]; r.validated() || r.Code == 0 {
		t.Errorf("wrong key on our image: imgtool verify exit %d %q", r.Code, r.Output)
	}
	if _, err := Verify(jobs[1].ours, theirKey.Public()); !errors.Is(err, ErrKeyMismatch) {
		t.Errorf("wrong key on our image: Verify = %v, want ErrKeyMismatch", err)
	}
}

// sameButSignature checks that two images of the same input, key and options are equal apart
// from the signature TLV's data and length (ECDSA DER signatures vary in length).
func sameButSignature(t *testing.T, name string, kt image.KeyType, ours, theirs []byte) {
	t.Helper()
	a, err := Parse(ours)
	if err != nil {
		t.Fatalf("%s: Parse(ours): %v", name, err)
	}
	b, err := Parse(theirs)
	if err != nil {
		t.Fatalf("%s: Parse(imgtool's): %v", name, err)
	}
	if n := a.HashedSize(); n != b.HashedSize() || !bytes.Equal(ours[:n], theirs[:n]) {
		t.Errorf("%s: header, body or protected TLVs differ: %s", name, firstDiff(ours[:a.HashedSize()], theirs[:b.HashedSize()]))
	}
	ra, rb := a.Unprotected.Records, b.Unprotected.Records
	if len(ra) != len(rb) {
		t.Fatalf("%s: TLVs %v vs %v", name, tlvTypes(&a.Unprotected), tlvTypes(&b.Unprotected))
	}
	for i := range ra {
		if ra[i].Type != rb[i].Type {
			t.Errorf("%s: TLV %d is %s, imgtool's %s", name, i, ra[i].Name, rb[i].Name)
		}
		if ra[i].Type == sigTLV(kt) {
			if kt != image.ECDSAP256 && kt != image.ECDSAP384 && ra[i].Len != rb[i].Len {
				t.Errorf("%s: signature lengths %d and %d", name, ra[i].Len, rb[i].Len)
			}
			continue
		}
		if !bytes.Equal(ra[i].Data, rb[i].Data) {
			t.Errorf("%s: %s TLV differs", name, ra[i].Name)
		}
	}
	if len(ours) != len(theirs) {
		if a.Trailer != nil || b.Trailer != nil || kt != image.ECDSAP256 && kt != image.ECDSAP384 {
			t.Errorf("%s: sizes %d and %d", name, len(ours), len(theirs))
		}
		return
	}
	if e := max(a.End(), b.End()); !bytes.Equal(ours[e:], theirs[e:]) {
		t.Errorf("%s: padding or trailer differ", name)
	}
}

// Both tools refuse an image that does not fit its slot with the trailer, at the same size,
// and an input whose header area is not zero without --pad-header.
func TestInteropLimits(t *testing.T) {
	needImgtool(t)
	t.Parallel()
	dir := t.TempDir()
	key := writeFile(t, dir, "k.pem", privPEM(t, goldenKey()))
	payload := mcuboottest.Payload(1000)
	in := writeFile(t, dir, "app.bin", payload)
	opts := SignOptions{Version: v1234, HeaderSize: 0x20, PadHeader: true, Align: 4}
	img, err := Sign(payload, goldenKey(), opts)
	if err != nil {
		t.Fatal(err)
	}
	tsize, _ := TrailerSize(opts.TrailerOptions())
	exact := len(img) + tsize
	for _, c := range []struct {
		slot int
		ok   bool
	}{{exact, true}, {exact - 1, false}} {
		t.Run(fmt.Sprint(c.slot), func(t *testing.T) {
			t.Parallel()
			o := opts
			o.SlotSize = c.slot
			o.Pad = true
			_, err := Sign(payload, goldenKey(), o)
			out, ierr := imgtool(t, "sign", "-k", key, "-v", "1.2.3+4", "-H", "0x20", "--pad-header", "--align", "4",
				"--pad", "-S", fmt.Sprint(c.slot), in, filepath.Join(dir, fmt.Sprint(c.slot)+".bin"))
			if (err == nil) != c.ok || (ierr == nil) != c.ok {
				t.Errorf("slot %#x: Sign error %v, imgtool error %v (%s); want ok=%v", c.slot, err, ierr, out, c.ok)
			}
			if !c.ok {
				want := fmt.Sprintf("Image size (0x%x) + trailer (0x%x) exceeds requested size 0x%x", len(img), tsize, c.slot)
				if !errors.Is(err, ErrTooLarge) || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(want)) || !strings.Contains(out, want) {
					t.Errorf("want both to say %q; Sign: %v; imgtool: %s", want, err, out)
				}
			}
		})
	}
	t.Run("header-not-zero", func(t *testing.T) {
		t.Parallel()
		out, ierr := imgtool(t, "sign", "-k", key, "-v", "1.0.0", "-H", "0x20", "-S", "0x10000", in, filepath.Join(dir, "nz.bin"))
		_, err := Sign(payload, goldenKey(), SignOptions{HeaderSize: 0x20, SlotSize: 0x10000})
		if ierr == nil || !strings.Contains(out, "does not start with zeros") || !errors.Is(err, ErrBadInput) {
			t.Errorf("imgtool: %v %s; Sign: %v", ierr, out, err)
		}
	})
}
