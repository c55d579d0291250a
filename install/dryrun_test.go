package install

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/slots"
)

// A dry run reads and checks everything a real run does and reaches the same verdict, but
// writes no slot byte and saves nothing: good images of every format pass with their facts,
// and bad ones (a changed chunk, a bad MCUboot signature, a file that does not match its
// hash, an image too large for the slot) are refused as a real run refuses them.
func TestDryRun(t *testing.T) {
	d, srv := newDevice(t), newServer(t)
	old := bytes.Repeat([]byte("old slot "), 100)
	for _, f := range []string{"rootfs-B", "firmware-B"} {
		if err := os.WriteFile(filepath.Join(d.dir, f), old, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw := testData(10, 700<<10)
	img := aduimgOf(t, raw, "2.0", nil)
	badChunk := changedChunk(t, img, 5)
	mcu := mcubootOf(t, testData(11, 50<<10), 1)
	badSig := bytes.Clone(mcu)
	badSig[len(badSig)-20] ^= 1
	wrongHash := srv.put("wrong-hash.aduimg", img)
	wrongHash.SHA256 = make([]byte, 32)
	for _, tc := range []struct {
		name string
		src  Source
		slot string
		want error
	}{
		{"aduimg", srv.put("ok.aduimg", img), "rootfs-b", nil},
		{"mcuboot", srv.put("ok.bin", mcu), "firmware-b", nil},
		{"raw", srv.put("ok.raw", raw), "rootfs-b", nil},
		{"changed chunk", srv.put("bad.aduimg", badChunk), "rootfs-b", image.ErrChunkHash},
		{"bad MCUboot signature", srv.put("bad.bin", badSig), "firmware-b", mcuboot.ErrBadSignature},
		{"file hash", wrongHash, "rootfs-b", ErrFileHash},
		{"too large", srv.put("big.raw", raw), "firmware-b", slots.ErrTooLarge},
	} {
		in := d.installer(t)
		in.AllowRaw, in.DryRun = true, true
		in.Save = func(Record) error { t.Errorf("%s: a dry run saved a record", tc.name); return nil }
		var checked int
		in.Check = func(i Info) error {
			if !i.CounterUnknown { // the final check (MCUboot is checked from its header first)
				checked++
			}
			return nil
		}
		rec, err := in.Install(context.Background(), tc.src, d.target(t, tc.slot), nil)
		if tc.want == nil && (err != nil || rec.Info == nil || checked != 1 || rec.Stats.BytesWritten != 0) {
			t.Errorf("%s: %v, record %+v, %d checks", tc.name, err, rec, checked)
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		for _, f := range []string{"rootfs-B", "firmware-B"} {
			if b, _ := os.ReadFile(filepath.Join(d.dir, f)); !bytes.Equal(b, old) {
				t.Fatalf("%s: a dry run changed %s", tc.name, f)
			}
		}
	}
	// A slot that does not exist yet is not created.
	in := d.installer(t)
	in.DryRun = true
	os.Remove(filepath.Join(d.dir, "rootfs-B"))
	if _, err := in.Install(context.Background(), srv.put("ok.aduimg", img), d.target(t, "rootfs-b"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "rootfs-B")); err == nil {
		t.Error("a dry run created the slot's file")
	}
}
