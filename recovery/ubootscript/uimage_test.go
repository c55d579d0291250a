package ubootscript

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aduflash/aduflash/internal/peers"
)

// TestImageLikeMkimage: the script image is byte for byte what u-boot-tools' mkimage makes of
// the same text, name, architecture and time (SOURCE_DATE_EPOCH).
func TestImageLikeMkimage(t *testing.T) {
	if _, err := exec.LookPath("mkimage"); err != nil {
		peers.Missing(t, "mkimage not found (apt-get install u-boot-tools)")
		return
	}
	s, err := Generate(testBoard(t, boardTOML), []Write{{"rootfs-a", img(t, "rootfs.img", 3<<20+100)}, {"kernel-a", img(t, "Image", 4096)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		arch, name, text string
		epoch            int64
	}{
		{"arm", "aduflash recovery", s.Text(), 1700000000},
		{"arm64", "recover", s.Text(), 0},
		{"arm", "exactly thirty-two bytes of name", "echo odd length\n", 1},
		{"riscv", "", "reset\n", 86400},
	} {
		t.Run(tc.arch+"/"+tc.name, func(t *testing.T) {
			in, out := filepath.Join(dir, "in.txt"), filepath.Join(dir, "out.scr")
			if err := os.WriteFile(in, []byte(tc.text), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("mkimage", "-A", tc.arch, "-O", "linux", "-T", "script", "-C", "none", "-n", tc.name, "-d", in, out)
			cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(tc.epoch, 10))
			if msg, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("mkimage: %v\n%s", err, msg)
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ScriptImage([]byte(tc.text), ImageOptions{Name: tc.name, Arch: tc.arch, Time: time.Unix(tc.epoch, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				i := 0
				for i < min(len(got), len(want)) && got[i] == want[i] {
					i++
				}
				t.Fatalf("ScriptImage differs from mkimage's at byte %d (ours %d bytes, mkimage %d)", i, len(got), len(want))
			}
		})
	}
	if got, err := s.Image(ImageOptions{Name: "x", Time: time.Unix(5, 0)}); err != nil || !bytes.HasSuffix(got, []byte(s.Text())) {
		t.Fatalf("Script.Image does not end in the text: %v", err)
	}
}

func TestImageRefusals(t *testing.T) {
	if _, err := ScriptImage([]byte("reset\n"), ImageOptions{Name: "123456789012345678901234567890123"}); !errors.Is(err, ErrCommand) {
		t.Fatalf("a 33-byte name: %v", err)
	}
	if _, err := ScriptImage(nil, ImageOptions{}); !errors.Is(err, ErrCommand) {
		t.Fatalf("an empty script (mkimage refuses it): %v", err)
	}
	if _, err := ScriptImage([]byte("reset\n"), ImageOptions{Arch: "vax"}); !errors.Is(err, ErrCommand) {
		t.Fatalf("an unknown architecture: %v", err)
	}
}
