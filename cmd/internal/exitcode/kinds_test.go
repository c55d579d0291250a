package exitcode

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/aduflash/aduflash/adu"
	"github.com/aduflash/aduflash/agent"
	"github.com/aduflash/aduflash/bootloader"
	"github.com/aduflash/aduflash/bootloader/grubenv"
	"github.com/aduflash/aduflash/bootloader/mcuboottrailer"
	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/download"
	"github.com/aduflash/aduflash/hub"
	"github.com/aduflash/aduflash/image"
	"github.com/aduflash/aduflash/image/mcuboot"
	"github.com/aduflash/aduflash/install"
	"github.com/aduflash/aduflash/internal/errkind"
	"github.com/aduflash/aduflash/internal/gptdisk"
	"github.com/aduflash/aduflash/iothub"
	"github.com/aduflash/aduflash/journal"
	"github.com/aduflash/aduflash/manifestgen"
	"github.com/aduflash/aduflash/publish"
	"github.com/aduflash/aduflash/recovery/console"
	"github.com/aduflash/aduflash/recovery/fastboot"
	"github.com/aduflash/aduflash/recovery/tftpserve"
	"github.com/aduflash/aduflash/recovery/ubootscript"
	"github.com/aduflash/aduflash/slots"
	"github.com/aduflash/aduflash/smp"
)

// packageErrors holds every exported sentinel error and error type of the packages whose
// errors reach the commands, by "folder.Name". TestEveryErrorHasAKind checks with go/ast that
// the list is complete, and that each says what it is about.
var packageErrors = map[string]error{
	// image
	"image.ErrBadMagic":           image.ErrBadMagic,
	"image.ErrUnsupportedVersion": image.ErrUnsupportedVersion,
	"image.ErrHeaderTooLarge":     image.ErrHeaderTooLarge,
	"image.ErrMalformedHeader":    image.ErrMalformedHeader,
	"image.ErrChunkHash":          image.ErrChunkHash,
	"image.ErrPayloadHash":        image.ErrPayloadHash,
	"image.ErrTruncated":          image.ErrTruncated,
	"image.ErrTrailingData":       image.ErrTrailingData,
	"image.ErrTooLarge":           image.ErrTooLarge,
	"image.ErrChunkTooLarge":      image.ErrChunkTooLarge,
	"image.ErrDowngrade":          image.ErrDowngrade,
	"image.ErrPayloadSize":        image.ErrPayloadSize,
	"image.ErrInvalidOption":      image.ErrInvalidOption,
	"image.ErrBadKey":             image.ErrBadKey,
	"image.ErrUnknownKey":         image.ErrUnknownKey,
	"image.ErrRevokedKey":         image.ErrRevokedKey,
	"image.ErrBadSignature":       image.ErrBadSignature,
	// image/mcuboot
	"image/mcuboot.ErrBadMagic":     mcuboot.ErrBadMagic,
	"image/mcuboot.ErrTruncated":    mcuboot.ErrTruncated,
	"image/mcuboot.ErrMalformed":    mcuboot.ErrMalformed,
	"image/mcuboot.ErrHashMismatch": mcuboot.ErrHashMismatch,
	"image/mcuboot.ErrKeyMismatch":  mcuboot.ErrKeyMismatch,
	"image/mcuboot.ErrBadSignature": mcuboot.ErrBadSignature,
	"image/mcuboot.ErrTooLarge":     mcuboot.ErrTooLarge,
	"image/mcuboot.ErrBadInput":     mcuboot.ErrBadInput,
	"image/mcuboot.ErrBadOptions":   mcuboot.ErrBadOptions,
	// manifestgen
	"manifestgen.ErrInvalid": manifestgen.ErrInvalid,
	// adu
	"adu.ErrMalformed":                  adu.ErrMalformed,
	"adu.ErrMalformedJWS":               adu.ErrMalformedJWS,
	"adu.ErrUnsupportedAlg":             adu.ErrUnsupportedAlg,
	"adu.ErrUnknownRootKid":             adu.ErrUnknownRootKid,
	"adu.ErrDisabledRootKey":            adu.ErrDisabledRootKey,
	"adu.ErrBadSigningKey":              adu.ErrBadSigningKey,
	"adu.ErrDisabledSigningKey":         adu.ErrDisabledSigningKey,
	"adu.ErrBadSignature":               adu.ErrBadSignature,
	"adu.ErrHashMismatch":               adu.ErrHashMismatch,
	"adu.ErrUnsupportedManifestVersion": adu.ErrUnsupportedManifestVersion,
	"adu.ErrBadRootKeyPackage":          adu.ErrBadRootKeyPackage,
	// bootloader
	"bootloader.ErrConfig":      bootloader.ErrConfig,
	"bootloader.ErrUnsupported": bootloader.ErrUnsupported,
	"bootloader.ErrFloorClass":  bootloader.ErrFloorClass,
	"bootloader.ErrUnknownBank": bootloader.ErrUnknownBank,
	"bootloader.ErrPrimaryBank": bootloader.ErrPrimaryBank,
	"bootloader.ErrNotPrimary":  bootloader.ErrNotPrimary,
	"bootloader.ErrNoFallback":  bootloader.ErrNoFallback,
	"bootloader.ErrBadState":    bootloader.ErrBadState,
	// bootloader/ubootenv
	"bootloader/ubootenv.ErrNoValidCopy": ubootenv.ErrNoValidCopy,
	"bootloader/ubootenv.ErrNotBlank":    ubootenv.ErrNotBlank,
	"bootloader/ubootenv.ErrBadCRC":      ubootenv.ErrBadCRC,
	"bootloader/ubootenv.ErrTooLarge":    ubootenv.ErrTooLarge,
	"bootloader/ubootenv.ErrCorrupt":     ubootenv.ErrCorrupt,
	"bootloader/ubootenv.ErrConfig":      ubootenv.ErrConfig,
	"bootloader/ubootenv.ErrInvalidVar":  ubootenv.ErrInvalidVar,
	"bootloader/ubootenv.ErrNotWritable": ubootenv.ErrNotWritable,
	"bootloader/ubootenv.ErrStorage":     ubootenv.ErrStorage,
	"bootloader/ubootenv.ErrLock":        ubootenv.ErrLock,
	"bootloader/ubootenv.ErrUnsupported": ubootenv.ErrUnsupported,
	// bootloader/grubenv
	"bootloader/grubenv.ErrSignature":     grubenv.ErrSignature,
	"bootloader/grubenv.ErrSize":          grubenv.ErrSize,
	"bootloader/grubenv.ErrBroken":        grubenv.ErrBroken,
	"bootloader/grubenv.ErrSyntax":        grubenv.ErrSyntax,
	"bootloader/grubenv.ErrName":          grubenv.ErrName,
	"bootloader/grubenv.ErrValue":         grubenv.ErrValue,
	"bootloader/grubenv.ErrTooLarge":      grubenv.ErrTooLarge,
	"bootloader/grubenv.ErrMenderCorrupt": grubenv.ErrMenderCorrupt,
	// bootloader/mcuboottrailer
	"bootloader/mcuboottrailer.ErrGeometry":  mcuboottrailer.ErrGeometry,
	"bootloader/mcuboottrailer.ErrShort":     mcuboottrailer.ErrShort,
	"bootloader/mcuboottrailer.ErrBadMagic":  mcuboottrailer.ErrBadMagic,
	"bootloader/mcuboottrailer.ErrStale":     mcuboottrailer.ErrStale,
	"bootloader/mcuboottrailer.ErrNotErased": mcuboottrailer.ErrNotErased,
	"bootloader/mcuboottrailer.ErrFlash":     mcuboottrailer.ErrFlash,
	// slots
	"slots.ErrConfig":           slots.ErrConfig,
	"slots.ErrMCUBehind":        slots.ErrMCUBehind,
	"slots.ErrNoReadBack":       slots.ErrNoReadBack,
	"slots.ErrUnknownSlot":      slots.ErrUnknownSlot,
	"slots.ErrActiveSlot":       slots.ErrActiveSlot,
	"slots.ErrActiveUnknown":    slots.ErrActiveUnknown,
	"slots.ErrTooLarge":         slots.ErrTooLarge,
	"slots.ErrReserveExhausted": slots.ErrReserveExhausted,
	"slots.ErrMismatch":         slots.ErrMismatch,
	"slots.ErrCursor":           slots.ErrCursor,
	// install
	"install.ErrSource":        install.ErrSource,
	"install.ErrDownload":      install.ErrDownload,
	"install.ErrRead":          install.ErrRead,
	"install.ErrFileHash":      install.ErrFileHash,
	"install.ErrRawNotAllowed": install.ErrRawNotAllowed,
	"install.ErrImage":         install.ErrImage,
	"install.ErrSlotClass":     install.ErrSlotClass,
	"install.ErrSlot":          install.ErrSlot,
	"install.ErrVerify":        install.ErrVerify,
	"install.ErrAdaptive":      install.ErrAdaptive,
	// download
	"download.ErrTooLong":      download.ErrTooLong,
	"download.ErrTruncated":    download.ErrTruncated,
	"download.ErrHashMismatch": download.ErrHashMismatch,
	"download.ErrHTTPStatus":   download.ErrHTTPStatus,
	"download.ErrNotFound":     download.ErrNotFound,
	"download.ErrChanged":      download.ErrChanged,
	"download.ErrBadResponse":  download.ErrBadResponse,
	"download.ErrBadState":     download.ErrBadState,
	"download.ErrStalled":      download.ErrStalled,
	// hub
	"hub.ErrUnknownDevice":       hub.ErrUnknownDevice,
	"hub.ErrInvalidKey":          hub.ErrInvalidKey,
	"hub.ErrInvalidPatch":        hub.ErrInvalidPatch,
	"hub.ErrNotConnected":        hub.ErrNotConnected,
	"hub.ErrInvalidOption":       hub.ErrInvalidOption,
	"hub.ErrTwinTooLarge":        hub.ErrTwinTooLarge,
	"hub.ErrNotRegular":          hub.ErrNotRegular,
	"hub.ErrUpdateExists":        hub.ErrUpdateExists,
	"hub.ErrUnknownEnrollment":   hub.ErrUnknownEnrollment,
	"hub.ErrLogStore":            hub.ErrLogStore,
	"hub.ErrUnknownUpdate":       hub.ErrUnknownUpdate,
	"hub.ErrImportFiles":         hub.ErrImportFiles,
	"hub.ErrNotDeployable":       hub.ErrNotDeployable,
	"hub.ErrNoMatchingDevices":   hub.ErrNoMatchingDevices,
	"hub.ErrUnknownDeployment":   hub.ErrUnknownDeployment,
	"hub.ErrDeploymentCancelled": hub.ErrDeploymentCancelled,
	"hub.ErrNoFailedDevices":     hub.ErrNoFailedDevices,
	"hub.ErrSigner":              hub.ErrSigner,
	"hub.ErrURLNotAllowed":       hub.ErrURLNotAllowed,
	"hub.ErrImportManifest":      hub.ErrImportManifest,
	"hub.ErrDownload":            hub.ErrDownload,
	// publish
	"publish.ErrFiles":           publish.ErrFiles,
	"publish.ErrUpdateExists":    publish.ErrUpdateExists,
	"publish.ErrImportFailed":    publish.ErrImportFailed,
	"publish.ErrEndpoint":        publish.ErrEndpoint,
	"publish.ErrForeignLocation": publish.ErrForeignLocation,
	"publish.ErrAPI":             publish.ErrAPI,
	"publish.ErrTokenFile":       publish.ErrTokenFile,
	// iothub
	"iothub.ErrInvalidConnectionString": iothub.ErrInvalidConnectionString,
	"iothub.ErrUnauthorized":            iothub.ErrUnauthorized,
	"iothub.ErrInvalidConfig":           iothub.ErrInvalidConfig,
	"iothub.ErrInvalidKey":              iothub.ErrInvalidKey,
	"iothub.ErrInvalidSASToken":         iothub.ErrInvalidSASToken,
	"iothub.ErrSASTokenExpired":         iothub.ErrSASTokenExpired,
	"iothub.ErrSASSignatureMismatch":    iothub.ErrSASSignatureMismatch,
	"iothub.ErrInvalidTopic":            iothub.ErrInvalidTopic,
	"iothub.ErrConnect":                 iothub.ErrConnect,
	"iothub.ErrNotConnected":            iothub.ErrNotConnected,
	"iothub.ErrClosed":                  iothub.ErrClosed,
	"iothub.ErrTimeout":                 iothub.ErrTimeout,
	"iothub.ErrStatus":                  iothub.ErrStatus,
	"iothub.ErrMalformedResponse":       iothub.ErrMalformedResponse,
	// agent
	"agent.ErrBadManifest":        agent.ErrBadManifest,
	"agent.ErrUnsupportedHandler": agent.ErrUnsupportedHandler,
	"agent.ErrUnsupportedStep":    agent.ErrUnsupportedStep,
	"agent.ErrIncompatible":       agent.ErrIncompatible,
	"agent.ErrSlotClass":          agent.ErrSlotClass,
	"agent.ErrDowngrade":          agent.ErrDowngrade,
	"agent.ErrRawNotAllowed":      agent.ErrRawNotAllowed,
	"agent.ErrImage":              agent.ErrImage,
	"agent.ErrSlot":               agent.ErrSlot,
	"agent.ErrVerify":             agent.ErrVerify,
	"agent.ErrBootloader":         agent.ErrBootloader,
	"agent.ErrHealth":             agent.ErrHealth,
	"agent.ErrRolledBack":         agent.ErrRolledBack,
	"agent.ErrMissingFile":        agent.ErrMissingFile,
	"agent.ErrDownload":           agent.ErrDownload,
	"agent.ErrFileHash":           agent.ErrFileHash,
	"agent.ErrRootKeyPackage":     agent.ErrRootKeyPackage,
	"agent.ErrRebooting":          agent.ErrRebooting,
	"agent.ErrConfig":             agent.ErrConfig,
	"agent.ErrBusy":               agent.ErrBusy,
	"agent.ErrSlotCopy":           agent.ErrSlotCopy,
	"agent.ErrMCUUnreachable":     agent.ErrMCUUnreachable,
	"agent.ErrMCUUpload":          agent.ErrMCUUpload,
	"agent.ErrMCUBoot":            agent.ErrMCUBoot,
	"agent.ErrMCUHealth":          agent.ErrMCUHealth,
	"agent.ErrMCUNotReverted":     agent.ErrMCUNotReverted,
	// journal
	"journal.ErrCorrupt": journal.ErrCorrupt,
	// recovery/console
	"recovery/console.ErrTransfer":       console.ErrTransfer,
	"recovery/console.ErrCheck":          console.ErrCheck,
	"recovery/console.ErrBadImage":       console.ErrBadImage,
	"recovery/console.ErrUnknownCommand": console.ErrUnknownCommand,
	"recovery/console.ErrBadBlocks":      console.ErrBadBlocks,
	"recovery/console.ErrCommand":        console.ErrCommand,
	"recovery/console.ErrNoPrompt":       console.ErrNoPrompt,
	"recovery/console.ErrEcho":           console.ErrEcho,
	"recovery/console.ErrTimeout":        console.ErrTimeout,
	"recovery/console.ErrClosed":         console.ErrClosed,
	"recovery/console.ErrBootFailed":     console.ErrBootFailed,
	"recovery/console.ErrBadCommand":     console.ErrBadCommand,
	"recovery/console.ErrPlan":           console.ErrPlan,
	"recovery/console.ErrSerial":         console.ErrSerial,
	"recovery/console.ErrBaud":           console.ErrBaud,
	// recovery/fastboot
	"recovery/fastboot.ErrNoResponse": fastboot.ErrNoResponse,
	"recovery/fastboot.ErrProtocol":   fastboot.ErrProtocol,
	"recovery/fastboot.ErrCommand":    fastboot.ErrCommand,
	"recovery/fastboot.ErrTooLarge":   fastboot.ErrTooLarge,
	"recovery/fastboot.ErrAborted":    fastboot.ErrAborted,
	// internal/gptdisk
	"internal/gptdisk.ErrNoGPT":       gptdisk.ErrNoGPT,
	"internal/gptdisk.ErrNoPartition": gptdisk.ErrNoPartition,
	// recovery/ubootscript
	"recovery/ubootscript.ErrConfig":      ubootscript.ErrConfig,
	"recovery/ubootscript.ErrUnreachable": ubootscript.ErrUnreachable,
	"recovery/ubootscript.ErrNeedGPT":     ubootscript.ErrNeedGPT,
	"recovery/ubootscript.ErrTooLarge":    ubootscript.ErrTooLarge,
	"recovery/ubootscript.ErrCommand":     ubootscript.ErrCommand,
	// recovery/tftpserve
	"recovery/tftpserve.ErrNoAck":       tftpserve.ErrNoAck,
	"recovery/tftpserve.ErrNoTrust":     tftpserve.ErrNoTrust,
	"recovery/tftpserve.ErrOutside":     tftpserve.ErrOutside,
	"recovery/tftpserve.ErrNotFound":    tftpserve.ErrNotFound,
	"recovery/tftpserve.ErrReadOnly":    tftpserve.ErrReadOnly,
	"recovery/tftpserve.ErrMode":        tftpserve.ErrMode,
	"recovery/tftpserve.ErrMalformed":   tftpserve.ErrMalformed,
	"recovery/tftpserve.ErrChanged":     tftpserve.ErrChanged,
	"recovery/tftpserve.ErrNotServable": tftpserve.ErrNotServable,
	// smp
	"smp.ErrTimeout":      smp.ErrTimeout,
	"smp.ErrClosed":       smp.ErrClosed,
	"smp.ErrFrame":        smp.ErrFrame,
	"smp.ErrPacket":       smp.ErrPacket,
	"smp.ErrReply":        smp.ErrReply,
	"smp.ErrDevice":       smp.ErrDevice,
	"smp.ErrNotSupported": smp.ErrNotSupported,
	"smp.ErrTooLarge":     smp.ErrTooLarge,
	"smp.ErrMismatch":     smp.ErrMismatch,
	"smp.ErrEndpoint":     smp.ErrEndpoint,
	// error types
	"image.ChunkError":              &image.ChunkError{},
	"manifestgen.ValidationError":   &manifestgen.ValidationError{},
	"adu.PathError":                 &adu.PathError{},
	"adu.VerifyError":               &adu.VerifyError{Err: adu.ErrBadSignature},
	"bootloader/grubenv.ParseError": &grubenv.ParseError{Err: grubenv.ErrSyntax},
	"download.StatusError":          &download.StatusError{StatusCode: 404},
	"iothub.StatusError":            &iothub.StatusError{Status: 500},
	"journal.CorruptError":          &journal.CorruptError{},
	"recovery/console.StepError":    &console.StepError{Err: console.ErrTimeout},
	"recovery/fastboot.FailError":   &fastboot.FailError{},
	"publish.OperationError":        &publish.OperationError{Op: &publish.Operation{}},
	"publish.APIError":              &publish.APIError{Status: 500},
	"smp.DeviceError":               &smp.DeviceError{},
}

// TestEveryErrorHasAKind: each exported sentinel error (Err...) and error type of these
// packages is marked where it is defined (errkind), so that Of maps it without a list of
// sentinels in a command; a new one without a mark, or missing here, fails.
func TestEveryErrorHasAKind(t *testing.T) {
	declared := declaredErrors(t)
	for _, name := range declared {
		if _, ok := packageErrors[name]; !ok {
			t.Errorf("%s is not in packageErrors: mark it where it is defined (errkind.New) and add it", name)
		}
	}
	for name, err := range packageErrors {
		if !contains(declared, name) {
			t.Errorf("packageErrors lists %s, which is not declared (renamed or removed?)", name)
		}
		var m errkind.Marked
		if !errors.As(err, &m) || m.ErrorKind() == errkind.Unmarked {
			t.Errorf("%s (%v) does not say what it is about: make it with errkind.New, or give its type an ErrorKind method", name, err)
			continue
		}
		want := map[errkind.Kind]int{errkind.Input: Invalid, errkind.Usage: Usage, errkind.Environment: IO, errkind.Cause: IO, errkind.Exists: Exists}[m.ErrorKind()]
		if got := Of(err); got != want {
			t.Errorf("Of(%s) = %d, want %d for a %s error", name, got, want, m.ErrorKind())
		}
	}
}

// declaredErrors lists "folder.Name" for the exported Err... variables and the exported types
// with an Error method in the folders of packageErrors' keys (their non-test files).
func declaredErrors(t *testing.T) []string {
	dirs := map[string]bool{}
	for name := range packageErrors {
		dirs[name[:strings.LastIndex(name, ".")]] = true
	}
	var out []string
	for dir := range dirs {
		files, err := filepath.Glob(filepath.Join("..", "..", "..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range errorNames(file) {
				out = append(out, dir+"."+name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// errorNames returns the exported Err... variables of file and the exported types that
// have an Error method declared in it.
func errorNames(file *ast.File) []string {
	var out []string
	for _, d := range file.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok != token.VAR {
				continue
			}
			for _, s := range d.Specs {
				for _, n := range s.(*ast.ValueSpec).Names {
					if strings.HasPrefix(n.Name, "Err") && n.IsExported() {
						out = append(out, n.Name)
					}
				}
			}
		case *ast.FuncDecl:
			if d.Recv == nil || d.Name.Name != "Error" || len(d.Recv.List) != 1 {
				continue
			}
			typ := d.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			if id, ok := typ.(*ast.Ident); ok && id.IsExported() {
				out = append(out, id.Name)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	i := sort.SearchStrings(list, s)
	return i < len(list) && list[i] == s
}

// TestChains: the codes of errors as the packages build them, where a chain holds more than
// one mark. Where the commands' old classifiers disagreed, the comment says what they gave.
func TestChains(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want int
	}{
		// install.readBack: a chunk that reads back wrong is the flash's fault, not the image's
		// (aduflash gave 3, aduagent 1).
		{"read-back chunk hash", fmt.Errorf("%w: reading rootfs-b back: %w", install.ErrVerify, &image.ChunkError{}), IO},
		// install.classify: a stage's sentinel takes the kind of its cause.
		{"slot too small", fmt.Errorf("%w: writing rootfs-b: %w", install.ErrSlot, slots.ErrTooLarge), Invalid},
		{"slot write fails", fmt.Errorf("%w: writing rootfs-b: %w", install.ErrSlot, io.ErrShortWrite), IO},
		{"image refused", fmt.Errorf("%w: %w", install.ErrImage, image.ErrBadSignature), Invalid},
		{"download refused", fmt.Errorf("%w: %w", install.ErrDownload, &download.StatusError{StatusCode: 404}), IO},
		// agent.Install: an image for a class the device lacks is a verdict on the image.
		{"no such class", fmt.Errorf("%w: %w", agent.ErrSlotClass, fmt.Errorf("%w: \"B/kernel\"", slots.ErrUnknownSlot)), Invalid},
		{"unknown slot", fmt.Errorf("%w: \"rootfs-c\"", slots.ErrUnknownSlot), Usage},
		// agent: a slot the update does not write, copied from the running bank: a spare
		// slot too small for what the running one holds, or a running slot that cannot be read.
		{"copy too large", fmt.Errorf("%w: kernel-a into kernel-b: %w", agent.ErrSlotCopy, slots.ErrTooLarge), Invalid},
		{"copy source unreadable", fmt.Errorf("%w: kernel-a into kernel-b: %w: %w", agent.ErrSlotCopy, install.ErrRead, io.ErrUnexpectedEOF), IO},
		// agent: a refused transition, or a bootloader that cannot be written.
		{"no fallback", fmt.Errorf("%w: marking bank B bad: %w", agent.ErrBootloader, bootloader.ErrNoFallback), Invalid},
		{"env storage", fmt.Errorf("%w: %w", agent.ErrBootloader, fmt.Errorf("%w: write: EIO", ubootenv.ErrStorage)), IO},
		// bootloader: an env variable naming no configured bank is a bad state (aduagent gave 2).
		{"bad adu_slot", fmt.Errorf("%w: adu_slot=\"C\": %w", bootloader.ErrBadState, bootloader.ErrUnknownBank), Invalid},
		// agent.Config: a root-key file that is not there.
		{"missing root keys", fmt.Errorf("%w: agent.root_keys: %w", agent.ErrConfig, fs.ErrNotExist), IO},
		{"bad keyring", fmt.Errorf("%w: agent.keyring/pub: %w", agent.ErrConfig, image.ErrBadKey), Invalid},
		// recovery/console: a step's error takes the kind of what U-Boot said; a damaged
		// transfer is a failed verification, a TFTP timeout the network's fault.
		{"crc mismatch in U-Boot", &console.StepError{Step: "load", Err: fmt.Errorf("%w: the output lacks \"==> 1c291ca3\"", console.ErrCheck)}, Invalid},
		{"tftp timeout", &console.StepError{Step: "load", Err: fmt.Errorf("%w: U-Boot printed \"Retry count exceeded\"", console.ErrTransfer)}, IO},
		// recovery/fastboot: a download abandoned because the image failed its check is a
		// verdict on the image; one whose file could not be read is not.
		{"fastboot bad chunk", fmt.Errorf("%w: %w", fastboot.ErrAborted, &image.ChunkError{}), Invalid},
		{"fastboot unreadable", fmt.Errorf("%w: %w", fastboot.ErrAborted, io.ErrUnexpectedEOF), IO},
	} {
		if got := Of(c.err); got != c.want {
			t.Errorf("%s: Of(%v) = %d, want %d", c.name, c.err, got, c.want)
		}
	}
}
