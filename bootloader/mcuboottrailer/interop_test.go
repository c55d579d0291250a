package mcuboottrailer

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/peers"
)

// memFlash is a slot image held in memory (an imgtool output file).
type memFlash []byte

func (m memFlash) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m)) {
		return 0, fmt.Errorf("memflash: read out of range")
	}
	return copy(p, m[off:]), nil
}
func (m memFlash) WriteAt(p []byte, off int64) (int, error) { return 0, fmt.Errorf("read-only") }
func (m memFlash) Erase(off, length int64) error            { return fmt.Errorf("read-only") }

// imgtool pads images to the slot size and writes magic (and image_ok with --confirm): our
// Read of its output must agree, and a RequestUpgrade on the same blank slot must program the
// same bytes.
func TestImgtoolTrailer(t *testing.T) {
	cmd := peers.Imgtool(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.bin")
	body := make([]byte, 3000)
	rand.Read(body)
	if err := os.WriteFile(app, body, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, align := range []int{1, 4, 8, 16, 32} {
		for _, erased := range []string{"0xff", "0"} {
			for _, confirm := range []bool{false, true} {
				name := fmt.Sprintf("align%d-erased%s-confirm%v", align, erased, confirm)
				t.Run(name, func(t *testing.T) {
					out := filepath.Join(dir, name+".bin")
					args := append(cmd[1:], "sign", "--header-size", "0x200", "--pad-header", "-S", "0x4000",
						"--align", fmt.Sprint(align), "-v", "1.2.3", "-R", erased, "--pad")
					if confirm {
						args = append(args, "--confirm")
					}
					args = append(args, app, out)
					if b, err := exec.Command(cmd[0], args...).CombinedOutput(); err != nil {
						t.Fatalf("imgtool: %v: %s", err, b)
					}
					img, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					zero := erased == "0"
					s := Slot{Flash: memFlash(img), Size: int64(len(img)), EraseSize: 4096, WriteSize: align, ErasedZero: zero}
					st, err := Read(s)
					if err != nil {
						t.Fatal(err)
					}
					wantOK := FlagUnset
					if confirm {
						wantOK = FlagSet
					}
					if st.Magic != MagicGood || st.ImageOK != wantOK || st.CopyDone != FlagUnset || st.SwapType != SwapNone || st.SwapSizeSet {
						t.Fatalf("read %+v", st)
					}
					// image/mcuboot agrees on where things are.
					tr, ok := mcuboot.ParseTrailer(img)
					if !ok || tr.Confirmed() != confirm || tr.MaxAlign != max(8, align) {
						t.Fatalf("image/mcuboot: %+v %v", tr, ok)
					}
					// Our writes on a blank slot give imgtool's trailer bytes (apart from
					// swap_info, which imgtool does not write).
					ev := byte(0xff)
					if zero {
						ev = 0
					}
					f := newNOR(len(img), 4096, align, ev)
					copy(f.mem, img[:0x200+len(body)])
					ours := s
					ours.Flash = f
					if err := RequestUpgrade(ours, confirm); err != nil {
						t.Fatal(err)
					}
					l := mcuboot.Layout(max(8, align))
					f.mem[len(f.mem)+l.SwapInfo] = ev
					tail := len(img) + l.SwapSize
					if !bytes.Equal(f.mem[tail:], img[tail:]) {
						t.Fatalf("trailer differs:\nours    % x\nimgtool % x", f.mem[tail:], img[tail:])
					}
				})
			}
		}
	}
}
