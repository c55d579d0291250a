package mcuboot

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteText writes a human-readable dump of the image with the facts `imgtool dumpinfo`
// shows: the header fields, the payload's place, every TLV of both areas with its data, and
// the trailer fields when the image is padded.
func (img *Image) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	h := img.Header

	p("Image header (offset 0x0)\n")
	p("  magic:              0x%08x\n", h.Magic)
	p("  load_addr:          0x%x\n", h.LoadAddr)
	p("  hdr_size:           0x%x\n", h.HeaderSize)
	p("  protected_tlv_size: 0x%x\n", h.ProtectedTLVSize)
	p("  img_size:           0x%x\n", h.ImageSize)
	if len(img.FlagNames) == 0 {
		p("  flags:              0x%x\n", h.Flags)
	} else {
		p("  flags:              0x%x (%s)\n", h.Flags, strings.Join(img.FlagNames, ", "))
	}
	p("  version:            %s\n", h.Version)
	p("Payload (offset 0x%x, size 0x%x)\n", h.HeaderSize, h.ImageSize)
	if img.Protected != nil {
		writeArea(bw, "Protected TLV area", img.Protected)
	}
	writeArea(bw, "TLV area", &img.Unprotected)
	if img.Padding > 0 {
		p("Padding (offset 0x%x, size 0x%x)\n", img.End(), img.Padding)
		if t := img.Trailer; t != nil {
			p("Image trailer (offset 0x%x, max align %d)\n", t.Offset, t.MaxAlign)
			swapSize := "unknown (erased)"
			if t.SwapSize != 0xffffffff {
				swapSize = fmt.Sprintf("%d", t.SwapSize)
			}
			p("  swap_size:  0x%x %s\n", t.SwapSize, swapSize)
			p("  swap_info:  0x%02x %s\n", t.SwapInfo, swapInfoText(t.SwapInfo))
			p("  copy_done:  0x%02x %s\n", t.CopyDone, flagText(t.CopyDone))
			p("  image_ok:   0x%02x %s\n", t.ImageOK, flagText(t.ImageOK))
			p("  magic:      % x\n", []byte(t.Magic))
		} else {
			p("  warning: no valid trailer magic in the last 16 bytes\n")
		}
	}
	p("End of image (0x%x bytes)\n", img.Size)
	return bw.Flush()
}

func writeArea(w io.Writer, title string, a *TLVArea) {
	fmt.Fprintf(w, "%s (offset 0x%x, magic 0x%04x, size 0x%x)\n", title, a.Offset, a.Magic, a.Size)
	for _, t := range a.Records {
		fmt.Fprintf(w, "  %s (0x%x) len 0x%x at 0x%x\n", t.Name, t.Type, t.Len, t.Offset)
		for i := 0; i < len(t.Data); i += 16 {
			fmt.Fprintf(w, "    % x\n", []byte(t.Data[i:min(i+16, len(t.Data))]))
		}
	}
}

func flagText(v uint8) string {
	switch v {
	case FlagSet:
		return "(set)"
	case 0xff, 0x00:
		return "(unset)"
	}
	return "(invalid)"
}

func swapInfoText(v uint8) string {
	if v == 0xff || v == 0x00 {
		return "(unset)"
	}
	names := map[int]string{SwapTypeNone: "none", SwapTypeTest: "test", SwapTypePerm: "perm", SwapTypeRevert: "revert"}
	n, ok := names[int(v&0x0f)]
	if !ok {
		n = fmt.Sprintf("invalid type %d", v&0x0f)
	}
	return fmt.Sprintf("(swap type %s, image %d)", n, v>>4)
}
