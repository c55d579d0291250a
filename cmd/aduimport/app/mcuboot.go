package app

import (
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/cmd/internal/outfile"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/internal/limitread"
)

// mcubootCommand groups sign, verify and dump of MCUboot images (package image/mcuboot).
func (e *env) mcubootCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcuboot",
		Usage: "sign, verify and dump MCUboot images (imgtool-compatible)",
		Description: `MCUboot images as imgtool 2.4.0 makes them: same flags, same bytes (Ed25519 images are
identical byte for byte; ECDSA and RSA-PSS signatures are randomized). Keys are imgtool's
PEM files, so "imgtool keygen" and "aduimport keygen" keys both work.

EXAMPLE:
   aduimport mcuboot sign -k k.pem --version 1.2.3+4 -H 0x200 --pad-header -S 0x40000 --align 4 app.bin app.signed.bin
   aduimport mcuboot verify -k k.pub.pem app.signed.bin
   aduimport mcuboot dump app.signed.bin`,
		Subcommands: []*cli.Command{
			e.mcubootSignCommand(),
			e.mcubootVerifyCommand(),
			e.mcubootDumpCommand(),
		},
	}
}

// mcubootTLVArgs collects repeated TAG=VALUE flags without splitting at commas.
type mcubootTLVArgs struct{ vals []string }

func (t *mcubootTLVArgs) Set(s string) error { t.vals = append(t.vals, s); return nil }
func (t *mcubootTLVArgs) String() string     { return strings.Join(t.vals, " ") }

func (e *env) mcubootSignCommand() *cli.Command {
	customTLV, customTLVFile := &mcubootTLVArgs{}, &mcubootTLVArgs{}
	return &cli.Command{
		Name:      "sign",
		Usage:     "make a signed MCUboot image from a binary (imgtool sign)",
		ArgsUsage: "INFILE OUTFILE",
		Description: `Adds the MCUboot header, the protected TLVs (security counter, dependencies, boot record,
UUIDs, custom TLVs) and the TLV area with the image hash, the key hash and the signature;
with --pad, --confirm or --test it pads the image to the slot size and writes the trailer
magic (and image_ok for --confirm). The flags are imgtool's, with the same defaults; flags
go before INFILE and OUTFILE. Without --key the image carries its hash but no signature.
Sizes and addresses take decimal or 0x hex. Binary files only (no Intel HEX).

--custom-tlv and --custom-tlv-file take TAG=VALUE (imgtool: two arguments, TAG VALUE).

Fails (exit 1) if the image plus its trailer does not fit in --slot-size, naming both sizes.

EXAMPLE:
   aduimport mcuboot sign -k k.pem --version 1.2.3+4 -H 0x200 --pad-header -S 0x40000 --align 4 app.bin app.signed.bin
   aduimport mcuboot sign -k k.pem -v 2.0.0 -H 0x200 --pad-header -S 0x40000 -s auto --confirm app.bin app.confirmed.bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Aliases: []string{"k"}, Usage: "private key (PEM) to sign with; without it the image is not signed", TakesFile: true},
			&cli.StringFlag{Name: "version", Aliases: []string{"v"}, Usage: "image version maj.min.rev+build (later parts optional); required"},
			&cli.StringFlag{Name: "header-size", Aliases: []string{"H"}, Usage: "header size in bytes, at least 32 (e.g. 0x200 for vector-table alignment); required"},
			&cli.BoolFlag{Name: "pad-header", Usage: "prepend --header-size erased bytes for the header (else INFILE must start with that many zeros)"},
			&cli.StringFlag{Name: "slot-size", Aliases: []string{"S"}, Usage: "slot size (of the secondary slot if they differ); required"},
			&cli.StringFlag{Name: "align", Value: "1", Usage: "flash write alignment: 1, 2, 4, 8, 16 or 32"},
			&cli.StringFlag{Name: "max-align", Usage: "maximum flash alignment, 8, 16 or 32 (default: max(8, --align))"},
			&cli.StringFlag{Name: "max-sectors", Aliases: []string{"M"}, Usage: "sectors of the swap status area (default 128)"},
			&cli.BoolFlag{Name: "pad", Usage: "pad to --slot-size and add the trailer magic"},
			&cli.BoolFlag{Name: "confirm", Usage: "pad and mark the image confirmed (image_ok)"},
			&cli.BoolFlag{Name: "test", Usage: "pad, leaving image_ok unset (a test swap)"},
			&cli.BoolFlag{Name: "overwrite-only", Usage: "trailer for overwrite-only upgrades instead of swap"},
			&cli.StringFlag{Name: "security-counter", Aliases: []string{"s"}, Usage: "security counter (protected SEC_CNT TLV): a number, or auto to derive it from the version"},
			&cli.StringFlag{Name: "load-addr", Aliases: []string{"L"}, Usage: "RAM load address (sets RAM_LOAD)"},
			&cli.StringFlag{Name: "rom-fixed", Aliases: []string{"F"}, Usage: "flash address the image is built for (sets ROM_FIXED)"},
			&cli.StringFlag{Name: "erased-val", Aliases: []string{"R"}, Usage: "value of erased flash: 0 or 0xff (default 0xff)"},
			&cli.StringFlag{Name: "public-key-format", Value: "hash", Usage: "name the key by its hash (KEYHASH TLV) or in full (PUBKEY TLV): hash or full"},
			&cli.StringFlag{Name: "sha", Value: "auto", Usage: "image hash: auto, 256, 384 or 512 (as the key type allows)"},
			&cli.BoolFlag{Name: "pure", Usage: "sign the image itself, not its digest (ed25519 only)"},
			&cli.BoolFlag{Name: "pad-sig", Usage: "pad ECDSA signatures to a fixed length (MCUboot before 1.5)"},
			&cli.BoolFlag{Name: "non-bootable", Usage: "mark the image non-bootable"},
			&cli.StringFlag{Name: "dependencies", Aliases: []string{"d"}, Usage: `dependencies on other images: "(IMAGE_ID,VERSION), ..."`},
			&cli.StringFlag{Name: "boot-record", Usage: "add a CBOR boot record TLV with this software type (at most 12 characters)"},
			&cli.StringFlag{Name: "vid", Usage: "vendor UUID (UUID_VID TLV): a UUID or a domain name"},
			&cli.StringFlag{Name: "cid", Usage: "image class UUID (UUID_CID TLV): a UUID or a name (needs --vid)"},
			&cli.GenericFlag{Name: "custom-tlv", Value: customTLV, Usage: "protected custom TLV TAG=VALUE (TAG 0xa0..0xfffe, VALUE 0x-hex or text); repeatable"},
			&cli.GenericFlag{Name: "custom-tlv-file", Value: customTLVFile, Usage: "protected custom TLV TAG=FILE, the value read from FILE; repeatable", TakesFile: true},
		},
		Action: func(c *cli.Context) error { return e.mcubootSign(c, customTLV.vals, customTLVFile.vals) },
	}
}

// mcubootSign is mcuboot sign's action: INFILE signed with the options of the flags (and
// the values of the custom TLV flags), written to OUTFILE, and described.
func (e *env) mcubootSign(c *cli.Context, customTLV, customTLVFile []string) error {
	if err := args(c, 2, 2, "INFILE OUTFILE"); err != nil {
		return err
	}
	if err := need(c, "version", "header-size", "slot-size"); err != nil {
		return err
	}
	in, out := c.Args().Get(0), c.Args().Get(1)
	for _, f := range []string{in, out} {
		if strings.EqualFold(filepath.Ext(f), ".hex") {
			return exitcode.Usagef("%s: %s: Intel HEX files are not supported; convert with objcopy -I ihex -O binary", c.Command.HelpName, f)
		}
	}
	o, err := mcubootSignOptions(c, customTLV, customTLVFile)
	if err != nil {
		return err
	}
	key, err := optionalSigner(c.String("key"))
	if err != nil {
		return err
	}
	payload, err := mcubootRead(in, mcuboot.MaxSize)
	if err != nil {
		return err
	}
	signed, err := mcuboot.Sign(payload, key, o)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if err := outfile.WriteFile(out, signed, 0o644); err != nil {
		return err
	}
	img, err := mcuboot.Parse(signed)
	if err != nil {
		return fmt.Errorf("internal error: the signed image does not parse: %w", err)
	}
	fmt.Fprintf(e.stdout, "%s: %s -> %s (0x%x bytes)\n", in, describeSigned(img, key, len(signed)), out, len(signed))
	return nil
}

// optionalSigner loads the private key at path, or returns nil for no path.
func optionalSigner(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, nil
	}
	return image.LoadPrivateKey(path)
}

// describeSigned says what mcuboot sign made: version, header and image size, the key type,
// the security counter and the padding (of a size bytes image).
func describeSigned(img *mcuboot.Image, key crypto.Signer, size int) string {
	what := "unsigned"
	if key != nil {
		t, _ := image.TypeOf(key.Public())
		what = "signed with " + string(t)
	}
	extra := ""
	if sc, ok := img.SecurityCounter(); ok {
		extra += fmt.Sprintf(", security counter 0x%x", sc)
	}
	if img.Trailer != nil {
		extra += fmt.Sprintf(", padded to 0x%x", size)
		if img.Trailer.Confirmed() {
			extra += " (confirmed)"
		}
	}
	return fmt.Sprintf("version %s, header 0x%x, image 0x%x bytes, %s%s", img.Header.Version, img.Header.HeaderSize, img.Header.ImageSize, what, extra)
}

// mcubootSignOptions turns the sign flags into SignOptions; every bad value is a usage error.
func mcubootSignOptions(c *cli.Context, customTLV, customTLVFile []string) (mcuboot.SignOptions, error) {
	f := signFlags{c}
	o := mcuboot.SignOptions{
		PadHeader: c.Bool("pad-header"), Pad: c.Bool("pad"), Confirm: c.Bool("confirm"), Test: c.Bool("test"),
		OverwriteOnly: c.Bool("overwrite-only"), Pure: c.Bool("pure"), PadSig: c.Bool("pad-sig"), NonBootable: c.Bool("non-bootable"),
		BootRecord: c.String("boot-record"), VID: c.String("vid"), CID: c.String("cid"),
	}
	for _, step := range []func(*mcuboot.SignOptions) error{
		f.version,
		f.sizes,
		f.alignment,
		f.keyAndHash,
		f.securityCounter,
		f.dependencies,
		func(o *mcuboot.SignOptions) error { return f.customTLVs(o, customTLV, customTLVFile) },
	} {
		if err := step(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// signFlags reads the flags of mcuboot sign.
type signFlags struct{ c *cli.Context }

func (f signFlags) usage(flag string, err error) error {
	return exitcode.Usagef("%s: --%s: %v", f.c.Command.HelpName, flag, err)
}

// num reads a number flag as imgtool does (mcuboot.ParseNumber), at most max; unset is 0.
func (f signFlags) num(flag string, max uint64) (uint64, error) {
	if !f.c.IsSet(flag) && f.c.String(flag) == "" {
		return 0, nil
	}
	n, err := mcuboot.ParseNumber(f.c.String(flag))
	if err != nil {
		return 0, f.usage(flag, err)
	}
	if n > max {
		return 0, f.usage(flag, fmt.Errorf("%d is out of range 0..%d", n, max))
	}
	return n, nil
}

// choice reads a flag that takes one of allowed.
func (f signFlags) choice(flag string, allowed ...string) (string, error) {
	s := f.c.String(flag)
	if !slices.Contains(allowed, s) {
		return "", f.usage(flag, fmt.Errorf("%q is not one of %s", s, strings.Join(allowed, ", ")))
	}
	return s, nil
}

func (f signFlags) version(o *mcuboot.SignOptions) error {
	v, err := mcuboot.ParseVersion(f.c.String("version"))
	if err != nil {
		return f.usage("version", err)
	}
	o.Version = v
	return nil
}

// sizes reads the header and slot sizes, the load or ROM address and the sector count.
func (f signFlags) sizes(o *mcuboot.SignOptions) error {
	n, err := f.num("header-size", 0xffff)
	if err != nil {
		return err
	}
	if n < mcuboot.HeaderSize {
		return f.usage("header-size", fmt.Errorf("minimum value is %d", mcuboot.HeaderSize))
	}
	o.HeaderSize = int(n)
	if n, err = f.num("slot-size", 0xffffffff); err != nil {
		return err
	}
	if n > math.MaxInt {
		return f.usage("slot-size", fmt.Errorf("%d is too large for this platform", n))
	}
	o.SlotSize = int(n)
	if n, err = f.num("load-addr", 0xffffffff); err != nil {
		return err
	}
	o.LoadAddr = uint32(n)
	if n, err = f.num("rom-fixed", 0xffffffff); err != nil {
		return err
	}
	o.ROMFixed = uint32(n)
	if n, err = f.num("max-sectors", 1<<16); err != nil {
		return err
	}
	if f.c.IsSet("max-sectors") && n == 0 {
		return f.usage("max-sectors", errors.New("must be at least 1"))
	}
	o.MaxSectors = int(n)
	return nil
}

// alignment reads the flash write alignment, MCUboot's maximum alignment and the erased value.
func (f signFlags) alignment(o *mcuboot.SignOptions) error {
	s, err := f.choice("align", "1", "2", "4", "8", "16", "32")
	if err != nil {
		return err
	}
	o.Align, _ = strconv.Atoi(s)
	if f.c.String("max-align") != "" {
		if s, err = f.choice("max-align", "8", "16", "32"); err != nil {
			return err
		}
		o.MaxAlign, _ = strconv.Atoi(s)
	}
	if f.c.String("erased-val") != "" {
		if s, err = f.choice("erased-val", "0", "0xff"); err != nil {
			return err
		}
		o.ErasedZero = s == "0"
	}
	return nil
}

// keyAndHash reads how the key is named in the image and the image hash.
func (f signFlags) keyAndHash(o *mcuboot.SignOptions) error {
	s, err := f.choice("public-key-format", "hash", "full")
	if err != nil {
		return err
	}
	o.PublicKeyFormat = mcuboot.KeyFormat(s)
	if s, err = f.choice("sha", "auto", "256", "384", "512"); err != nil {
		return err
	}
	if s != "auto" {
		o.Hash, _ = strconv.Atoi(s)
	}
	return nil
}

// securityCounter reads -s: a number, or "auto" (from the version).
func (f signFlags) securityCounter(o *mcuboot.SignOptions) error {
	sc := f.c.String("security-counter")
	if sc == "" {
		return nil
	}
	v := mcuboot.AutoSecurityCounter(o.Version)
	if !strings.EqualFold(sc, "auto") {
		n, err := mcuboot.ParseNumber(sc)
		if err != nil {
			return f.usage("security-counter", err)
		}
		if n > 0xffffffff {
			return f.usage("security-counter", fmt.Errorf("%d is out of range 0..0xffffffff", n))
		}
		v = uint32(n)
	}
	o.SecurityCounter = &v
	return nil
}

func (f signFlags) dependencies(o *mcuboot.SignOptions) error {
	d := f.c.String("dependencies")
	if d == "" {
		return nil
	}
	deps, err := mcuboot.ParseDependencies(d)
	if err != nil {
		return f.usage("dependencies", err)
	}
	o.Dependencies = deps
	return nil
}

// customTLVs reads the TAG=VALUE arguments of --custom-tlv and the TAG=FILE ones of
// --custom-tlv-file, each tag once.
func (f signFlags) customTLVs(o *mcuboot.SignOptions, inline, files []string) error {
	seen := map[uint16]bool{}
	for i, a := range slices.Concat(inline, files) {
		flag := "custom-tlv"
		if i >= len(inline) {
			flag = "custom-tlv-file"
		}
		t, err := f.customTLV(flag, a)
		if err != nil {
			return err
		}
		if seen[t.Type] {
			return f.usage(flag, fmt.Errorf("custom TLV 0x%x already exists", t.Type))
		}
		seen[t.Type] = true
		o.CustomTLVs = append(o.CustomTLVs, t)
	}
	return nil
}

// customTLV parses one TAG=VALUE (--custom-tlv) or TAG=FILE (--custom-tlv-file) argument.
func (f signFlags) customTLV(flag, arg string) (mcuboot.CustomTLV, error) {
	tag, val, ok := strings.Cut(arg, "=")
	if !ok {
		return mcuboot.CustomTLV{}, f.usage(flag, fmt.Errorf("%q is not TAG=VALUE", arg))
	}
	if flag == "custom-tlv" {
		t, err := mcuboot.ParseCustomTLV(tag, val)
		if err != nil {
			return t, f.usage(flag, err)
		}
		return t, nil
	}
	t, err := mcuboot.ParseCustomTLV(tag, "")
	if err != nil {
		return t, f.usage(flag, err)
	}
	if t.Value, err = mcubootRead(val, 0xffff); err != nil {
		return t, err // an I/O error, not a usage error
	}
	return t, nil
}

func (e *env) mcubootVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check an MCUboot image's hash and signature (imgtool verify)",
		ArgsUsage: "FILE",
		Description: `Checks the header and TLV structure, the image hash over header, body and protected TLVs,
that the image names the key (KEYHASH or PUBKEY TLV) and that its signature verifies.
--key takes a public key PEM, or a private key PEM as imgtool accepts. Exit 0 when the
image is valid, 1 with the reason when it is not.

EXAMPLE:
   aduimport mcuboot verify -k keys/mcu.pub.pem app.signed.bin`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "key", Aliases: []string{"k"}, Usage: "public (or private) key PEM the image must be signed with; required", TakesFile: true},
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "FILE"); err != nil {
				return err
			}
			if err := need(c, "key"); err != nil {
				return err
			}
			pub, err := image.LoadPublicKey(c.String("key"))
			if err != nil {
				return err
			}
			kr, err := image.NewKeyring(pub)
			if err != nil {
				return err
			}
			file := c.Args().First()
			data, err := mcubootRead(file, mcuboot.MaxSize)
			if err != nil {
				return err
			}
			img, err := mcuboot.VerifyTrusted(data, kr)
			if err != nil {
				return exitcode.InvalidInput(fmt.Errorf("%s: %w", file, err))
			}
			fmt.Fprintln(e.stdout, "Image was correctly validated")
			fmt.Fprintf(e.stdout, "Image version: %s\n", img.Header.Version)
			for _, t := range img.Unprotected.Records {
				switch t.Type {
				case mcuboot.TLVSHA256, mcuboot.TLVSHA384, mcuboot.TLVSHA512:
					fmt.Fprintf(e.stdout, "Image digest: %s\n", hex.EncodeToString(t.Data))
				}
			}
			return nil
		},
	}
}

func (e *env) mcubootDumpCommand() *cli.Command {
	return &cli.Command{
		Name:      "dump",
		Usage:     "print an MCUboot image's header, TLVs and trailer (imgtool dumpinfo)",
		ArgsUsage: "FILE",
		Description: `Prints the header fields, the payload's offset and size, every protected and unprotected
TLV with its data, and, for an image padded to its slot, the trailer (magic, image_ok,
copy_done, swap_info, swap_size). It checks the structure only, not the hash or signature
(use verify). --json prints the same facts as JSON.

EXAMPLE:
   aduimport mcuboot dump app.signed.bin
   aduimport mcuboot dump --json app.signed.bin | jq .header.version`,
		Flags: []cli.Flag{
			cliapp.JSONFlag("the header, TLVs and trailer"),
		},
		Action: func(c *cli.Context) error {
			if err := args(c, 1, 1, "FILE"); err != nil {
				return err
			}
			file := c.Args().First()
			data, err := mcubootRead(file, mcuboot.MaxSize)
			if err != nil {
				return err
			}
			img, err := mcuboot.Parse(data)
			if err != nil {
				return exitcode.InvalidInput(fmt.Errorf("%s: %w", file, err))
			}
			if c.Bool("json") {
				b, err := json.MarshalIndent(img, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%s\n", b)
				return err
			}
			return img.WriteText(e.stdout)
		},
	}
}

// mcubootRead reads a whole file of at most limit bytes; a larger file is invalid input.
func mcubootRead(path string, limit int64) ([]byte, error) {
	b, err := limitread.File(path, limit)
	if errors.Is(err, limitread.ErrTooLarge) {
		return nil, exitcode.InvalidInput(fmt.Errorf("%w: %w", mcuboot.ErrTooLarge, err))
	}
	return b, err
}
