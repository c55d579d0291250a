package mcuboottrailer

import (
	"bytes"
	"testing"

	"github.com/aduflash/aduflash/image/mcuboot"
)

// FuzzParse checks that decoding any trailer region never panics, that its results stay in
// range, and that it agrees with image/mcuboot's ParseTrailer on the fields.
func FuzzParse(f *testing.F) {
	blank := bytes.Repeat([]byte{0xff}, 160)
	f.Add(blank, uint8(8), false)
	good := bytes.Clone(blank)
	copy(good[len(good)-16:], mcuboot.TrailerMagic(8))
	good[len(good)-24] = 1
	good[len(good)-40] = 0x13
	f.Add(good, uint8(8), false)
	f.Add(good[:47], uint8(8), false)
	f.Add(bytes.Repeat([]byte{0}, 160), uint8(32), true)
	f.Fuzz(func(t *testing.T, b []byte, maxAlign uint8, zero bool) {
		st, err := Parse(b, int(maxAlign), zero)
		if err != nil {
			return
		}
		if st.Magic < MagicGood || st.Magic > MagicUnset || st.ImageOK < FlagSet || st.ImageOK > FlagUnset ||
			st.CopyDone < FlagSet || st.CopyDone > FlagUnset || st.SwapType > SwapRevert || st.ImageNumber > 15 {
			t.Fatalf("out of range: %+v", st)
		}
		if st.Magic == MagicGood {
			tr, ok := mcuboot.ParseTrailer(b)
			if !ok || tr.MaxAlign != int(maxAlign) || tr.SwapInfo != st.SwapInfo || tr.SwapSize != st.SwapSize ||
				(tr.ImageOK == 1) != (st.ImageOK == FlagSet) || (tr.CopyDone == 1) != (st.CopyDone == FlagSet) {
				t.Fatalf("disagrees with image/mcuboot: %+v vs %+v", st, tr)
			}
		}
		_ = Decide(st, st)
	})
}
