package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/aduflash/aduflash/bootloader/ubootenv"
	"github.com/aduflash/aduflash/cmd/internal/cliapp"
	"github.com/aduflash/aduflash/cmd/internal/exitcode"
	"github.com/aduflash/aduflash/mtd"
)

func (e *env) envDoctorCommand() *cli.Command {
	return &cli.Command{
		Name:  "doctor",
		Usage: "check the configured env copies and the config against what is on the devices",
		Description: `Reads every copy fw_env.config names and reports, per copy: device, offset, size, whether
it could be read, the stored and computed CRC, the flags byte, the number of variables, and
which copy is current (as U-Boot chooses it). Then it looks for the mistakes that make
fw_printenv and U-Boot disagree:

  - /dev/mtdblockN instead of /dev/mtdN (refused by the parser: the block emulation loses
    erase and NAND bad-block handling);
  - both copies at the same place, copies overlapping, or sharing an erase block;
  - wrong env size: a copy with a bad CRC is tried at the configured offset with the sizes
    0x2000, 0x4000, 0x8000, 0x10000, 0x20000 and 0x40000, and with the other header (single
    vs redundant); a big-endian CRC is recognised;
  - wrong offset: the device is scanned (every erase block on NAND, every 0x1000 bytes
    elsewhere; the first 64 MiB) for an env of the configured size with a valid CRC;
  - raw MTD: a sector size that is not a multiple of the erase size, an env larger than the
    sector, a copy beyond the end of the device, and on NAND a missing or too small
    num_sectors given the bad blocks in the range.

A torn or blank copy of a redundant env that is not the current one is a warning (the next
write goes there): the env is still healthy. Warnings do not change the exit code.

Exit codes: 0 healthy (a valid current copy, no problem found); 1 problems (no valid copy,
config mismatches, bad layout); 2 usage error; 3 the devices cannot be read (and nothing else
is wrong).

EXAMPLE:
   aduflash env doctor
   aduflash env doctor -c /etc/fw_env.config --json`,
		Flags: append(envConfigFlags(),
			cliapp.JSONFlag("the report"),
		),
		Action: e.envDoctor,
	}
}

// doctorSizes are the env sizes tried when the configured one gives a bad CRC.
var doctorSizes = []int64{0x2000, 0x4000, 0x8000, 0x10000, 0x20000, 0x40000}

// doctorScanLimit bounds the offset scan.
const doctorScanLimit = 64 << 20

type doctorCopy struct {
	Copy        int    `json:"copy"`
	Device      string `json:"device"`
	Kind        string `json:"kind"`
	Offset      int64  `json:"offset"`
	Physical    int64  `json:"physical_offset,omitempty"` // where a NAND copy lies after skipping bad blocks, when not at Offset
	Size        int64  `json:"size"`
	Readable    bool   `json:"readable"`
	ReadError   string `json:"read_error,omitempty"`
	CRCOK       bool   `json:"crc_ok"`
	StoredCRC   uint32 `json:"stored_crc"`
	ComputedCRC uint32 `json:"computed_crc"`
	Flags       *int   `json:"flags,omitempty"`
	Variables   int    `json:"variables"`
	Current     bool   `json:"current"`
	Blank       bool   `json:"blank,omitempty"`
}

type doctorFinding struct {
	Severity string `json:"severity"` // "error" or "warning"
	Copy     int    `json:"copy,omitempty"`
	Message  string `json:"message"`
	io       bool   // a device that cannot be read (exit 3 when alone)
}

type doctorReport struct {
	Config    string          `json:"config"`
	Namespace string          `json:"namespace,omitempty"`
	Redundant bool            `json:"redundant"`
	Scheme    string          `json:"flag_scheme"`
	EnvSize   int64           `json:"env_size"`
	Copies    []doctorCopy    `json:"copies"`
	Current   int             `json:"current"` // copy number in use; 0 = none
	Findings  []doctorFinding `json:"findings"`
	Healthy   bool            `json:"healthy"`
	ExitCode  int             `json:"exit_code"`
}

func (r *doctorReport) add(sev string, copyNo int, io bool, format string, args ...any) {
	r.Findings = append(r.Findings, doctorFinding{Severity: sev, Copy: copyNo, Message: fmt.Sprintf(format, args...), io: io})
}

// doctorDevice is one copy's medium: raw access for scanning plus the env storage.
type doctorDevice struct {
	ra         io.ReaderAt
	size       int64
	eraseSize  int // 0: not flash
	nand       bool
	isBad      func(off int64) (bool, error)
	storage    ubootenv.Storage // nil when the layout does not fit the medium
	storageErr error
	openErr    error
	close      func()
}

func (d *doctorDevice) Close() {
	if d.close != nil {
		d.close()
	}
}

// mtdDoctorDevice wraps an MTD device (package mtd or mtdsim).
func mtdDoctorDevice(name string, dev ubootenv.MTD, info mtd.Info, cd ubootenv.Device) *doctorDevice {
	geo := ubootenv.MTDGeometry{NAND: info.Type.IsNAND(), Size: info.Size, EraseSize: info.EraseSize, WriteSize: info.WriteSize}
	dd := &doctorDevice{ra: dev, size: info.Size, eraseSize: info.EraseSize, nand: geo.NAND, isBad: dev.IsBad}
	st, err := ubootenv.NewMTDStorage(name, dev, geo, cd.Offset, cd.SectorSize, int(cd.NumSectors), cd.DisableLock)
	if err != nil {
		dd.storageErr = err
	} else {
		dd.storage = st
	}
	return dd
}

// openDoctorDevice opens one copy's medium read-only where it can.
func openDoctorDevice(cd ubootenv.Device, roots mtd.Paths) *doctorDevice {
	switch cd.Kind {
	case ubootenv.KindMTD:
		dev, err := roots.Open(roots.DevPath(cd.Path))
		if err != nil {
			return &doctorDevice{openErr: err}
		}
		dd := mtdDoctorDevice(cd.Path, dev, dev.Info(), cd)
		dd.close = func() { dev.Close() }
		return dd
	case ubootenv.KindUBI:
		v, err := findEnvVolume(cd, roots)
		if err != nil {
			return &doctorDevice{openErr: err}
		}
		return &doctorDevice{ra: v, size: v.Size(), storage: &ubootenv.UBIStorage{Vol: v, Name: v.Path}}
	}
	f, err := os.Open(cd.Path)
	if err != nil {
		return &doctorDevice{openErr: err}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return &doctorDevice{openErr: err}
	}
	return &doctorDevice{ra: f, size: size, storage: fileStorage(cd, roots), close: func() { f.Close() }}
}

var reDoctorMTDBlock = regexp.MustCompile(`/dev/mtdblock([0-9]+)`)

// doctorConfig loads the config; where the parser refuses it for a reason doctor can
// explain (an mtdblock device, both copies at one place), it reports that and carries on
// with the devices as written.
func doctorConfig(path, namespace string, rep *doctorReport) (ubootenv.Config, error) {
	cfg, err := ubootenv.LoadConfig(path, namespace)
	if err == nil {
		return cfg, nil
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return ubootenv.Config{}, exitcode.WithCode(exitcode.IO, rerr)
	}
	if !errors.Is(err, ubootenv.ErrConfig) {
		return ubootenv.Config{}, err
	}
	mtdblockNote := func(line int, orig string) {
		rep.add("error", 0, false, "%s:%d: %s is the MTD block emulation: it hides erase and NAND bad-block handling, so libubootenv and this tool refuse it (or corrupt NAND); use the character device %s",
			path, line, orig, reDoctorMTDBlock.ReplaceAllString(orig, "/dev/mtd$1"))
	}
	if ubootenv.IsYAML(path, data) {
		fixed := reDoctorMTDBlock.ReplaceAll(data, []byte("/dev/mtd$1"))
		if bytes.Equal(fixed, data) {
			return ubootenv.Config{}, exitcode.InvalidInput(err)
		}
		cfgs, ferr := ubootenv.ParseConfigYAML(path, fixed)
		if ferr != nil {
			return ubootenv.Config{}, exitcode.InvalidInput(err)
		}
		for _, c := range cfgs {
			if namespace == "" || c.Namespace == namespace {
				cfg = c
				break
			}
		}
		if len(cfg.Devices) == 0 {
			return ubootenv.Config{}, exitcode.InvalidInput(err)
		}
		for i, l := range bytes.Split(data, []byte("\n")) {
			for _, m := range reDoctorMTDBlock.FindAll(l, -1) {
				mtdblockNote(i+1, string(m))
			}
		}
		return cfg, nil
	}
	// Legacy form: each line on its own.
	lines := strings.Split(string(data), "\n")
	cfg = ubootenv.Config{File: path}
	for i, raw := range lines {
		t := raw
		if j := strings.IndexByte(t, '#'); j >= 0 {
			t = t[:j]
		}
		fields := strings.Fields(t)
		if len(fields) == 0 {
			continue
		}
		orig := fields[0]
		blockDev := reDoctorMTDBlock.MatchString(orig) && strings.HasPrefix(orig, "/dev/mtdblock")
		if blockDev {
			fields[0] = reDoctorMTDBlock.ReplaceAllString(orig, "/dev/mtd$1")
		}
		one := make([]string, len(lines))
		one[i] = strings.Join(fields, " ")
		c1, perr := ubootenv.ParseConfig(path, []byte(strings.Join(one, "\n")))
		if perr != nil {
			return ubootenv.Config{}, exitcode.InvalidInput(err)
		}
		d := c1.Devices[0]
		if blockDev {
			mtdblockNote(i+1, orig)
			// Read it as what it is: a block device.
			d.Path, d.Kind = orig, ubootenv.KindFile
		}
		cfg.Devices = append(cfg.Devices, d)
	}
	if len(cfg.Devices) != 1 && len(cfg.Devices) != 2 {
		return ubootenv.Config{}, exitcode.InvalidInput(err)
	}
	if len(cfg.Devices) == 2 {
		a, b := cfg.Devices[0], cfg.Devices[1]
		if a.EnvSize != b.EnvSize {
			return ubootenv.Config{}, exitcode.InvalidInput(err)
		}
		if a.Path == b.Path && a.Volume == b.Volume && a.Offset == b.Offset {
			rep.add("error", 0, false, "%s: lines %d and %d put both copies at the same place (%s offset %#x): every write replaces the only copy, so there is no redundancy and a power cut loses the env; give copy 2 its own offset (U-Boot's CONFIG_ENV_OFFSET_REDUND)",
				path, a.Line, b.Line, a.Path, a.Offset)
		}
	}
	return cfg, nil
}

func (e *env) envDoctor(c *cli.Context) error {
	if err := cliapp.Args(c, 0, 0, "no arguments"); err != nil {
		return err
	}
	rep, err := runDoctor(c.String("config"), c.String("namespace"), flagRoots(c))
	if err != nil {
		return err
	}
	if c.Bool("json") {
		if err := cliapp.WriteJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		printDoctor(e.stdout, rep)
	}
	if rep.ExitCode != 0 {
		return cliapp.Silent(exitcode.WithCode(rep.ExitCode, errors.New("env doctor found problems")))
	}
	return nil
}

// runDoctor loads the config, opens every copy's device read-only and diagnoses them.
func runDoctor(config, namespace string, roots mtd.Paths) (*doctorReport, error) {
	rep := &doctorReport{Config: config, Namespace: namespace}
	cfg, err := doctorConfig(config, namespace, rep)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			err = exitcode.WithCode(exitcode.IO, err)
		}
		return nil, err
	}
	var devs []*doctorDevice
	for _, d := range cfg.Devices {
		dd := openDoctorDevice(d, roots)
		defer dd.Close()
		devs = append(devs, dd)
	}
	diagnose(cfg, devs, rep)
	return rep, nil
}

// explained is an env error told in env doctor's words; errors.Is and the exit code still
// see the library's error.
type explained struct {
	msg string
	err error
}

func (x *explained) Error() string { return x.msg }
func (x *explained) Unwrap() error { return x.err }

// explainNoValidCopy tells an env with no valid copy (or a write refused over one) by what
// env doctor finds about each copy, and says what to do next. Other errors pass unchanged.
func explainNoValidCopy(c *cli.Context, err error) error {
	if !errors.Is(err, ubootenv.ErrNoValidCopy) {
		return err
	}
	doctorCmd := fmt.Sprintf("%s env doctor -c %s", c.App.Name, c.String("config"))
	if ns := c.String("namespace"); ns != "" {
		doctorCmd += " -m " + ns
	}
	what, next := "no valid environment copy", fmt.Sprintf("'%s' shows every check", doctorCmd)
	if errors.Is(err, ubootenv.ErrNotBlank) {
		what = "refusing to write: no valid environment copy, and the area is not blank"
		next += "; --force writes anyway, and what is there is lost"
	}
	found := err.Error()
	if rep, derr := runDoctor(c.String("config"), c.String("namespace"), flagRoots(c)); derr == nil {
		var msgs []string
		for _, f := range rep.Findings {
			if f.Severity == "error" && f.Copy != 0 {
				msgs = append(msgs, f.Message)
			}
		}
		if len(msgs) > 0 {
			found = strings.Join(msgs, "; ")
		}
	}
	return &explained{msg: fmt.Sprintf("%s: %s (%s)", what, found, next), err: err}
}

// readRaw reads n bytes at off from a device, or nil when they are not there.
func (d *doctorDevice) readRaw(off, n int64) []byte {
	if d.ra == nil || off < 0 || off+n > d.size {
		return nil
	}
	buf := make([]byte, n)
	if _, err := d.ra.ReadAt(buf, off); err != nil && !(errors.Is(err, io.EOF)) {
		return nil
	}
	return buf
}

// resolve turns a negative (from the end) offset into an absolute one.
func (d *doctorDevice) resolve(off int64) int64 {
	if off < 0 {
		return off + d.size
	}
	return off
}

func crcValid(blob []byte, f ubootenv.Format) bool {
	ok, _, _, err := ubootenv.CRCOK(blob, f)
	return err == nil && ok
}

func countVars(blob []byte, f ubootenv.Format) int {
	b, err := ubootenv.Decode(blob, f)
	if err != nil {
		return 0
	}
	return len(b.Vars)
}

func allBytes(b []byte, v byte) bool {
	for _, x := range b {
		if x != v {
			return false
		}
	}
	return true
}

// diagnose fills rep from the config and the opened devices (one per copy): each copy as
// read, the current one, what the invalid ones hold and where a valid env lies instead, the
// layout, and the verdict.
func diagnose(cfg ubootenv.Config, devs []*doctorDevice, rep *doctorReport) {
	f := ubootenv.Format{Size: int(cfg.EnvSize()), Redundant: len(cfg.Devices) == 2}
	rep.Redundant, rep.EnvSize = f.Redundant, cfg.EnvSize()
	scheme := doctorScheme(devs)
	rep.Scheme = scheme.String()
	blobs := make([][]byte, len(devs))
	for i, cd := range cfg.Devices {
		blobs[i] = readDoctorCopy(cd, i+1, devs[i], f, rep)
	}
	cur := currentCopy(rep, f, scheme)
	for i := range cfg.Devices {
		if blobs[i] != nil && !rep.Copies[i].CRCOK {
			explainInvalid(cfg, devs, i, blobs[i], cur, f, rep)
		}
	}
	layoutChecks(cfg, devs, rep)
	rep.verdict(cur)
}

// doctorScheme is the flag scheme the copies' medium implies (serial unless raw NOR).
func doctorScheme(devs []*doctorDevice) ubootenv.FlagScheme {
	for _, d := range devs {
		if ds, ok := d.storage.(ubootenv.DefaultSchemer); ok {
			return ds.DefaultScheme()
		}
	}
	return ubootenv.FlagsSerial
}

// readDoctorCopy reads copy n as the config places it, adds its line to rep.Copies, and
// returns its bytes (nil when they cannot be read).
func readDoctorCopy(cd ubootenv.Device, n int, d *doctorDevice, f ubootenv.Format, rep *doctorReport) []byte {
	size := int64(f.Size)
	dc := doctorCopy{Copy: n, Device: cd.Path, Kind: cd.Kind.String(), Offset: cd.Offset, Size: size}
	if cd.Volume != "" {
		dc.Device += ":" + cd.Volume
	}
	var blob []byte
	switch {
	case d.openErr != nil:
		dc.ReadError = d.openErr.Error()
		rep.add("error", n, true, "copy %d: cannot open %s: %v", n, dc.Device, d.openErr)
	case d.storage != nil:
		buf := make([]byte, size)
		if err := d.storage.ReadCopy(buf); err != nil {
			dc.ReadError = err.Error()
			rep.add("error", n, true, "copy %d: cannot read %s at %#x: %v", n, dc.Device, cd.Offset, err)
			break
		}
		blob = buf
		if m, ok := d.storage.(*ubootenv.MTDStorage); ok {
			if at, err := m.Location(int(size)); err == nil && at != d.resolve(cd.Offset) {
				dc.Physical = at
			}
		}
	default:
		rep.add("error", n, false, "copy %d: the layout does not fit the medium: %v", n, d.storageErr)
		blob = d.readRaw(d.resolve(cd.Offset), size)
	}
	if blob != nil {
		dc.Readable = true
		dc.CRCOK, dc.StoredCRC, dc.ComputedCRC, _ = ubootenv.CRCOK(blob, f)
		if f.Redundant {
			fl := int(blob[4])
			dc.Flags = &fl
		}
		dc.Blank = allBytes(blob, 0xff)
		if dc.CRCOK {
			b, err := ubootenv.Decode(blob, f)
			dc.Variables = len(b.Vars)
			if err != nil {
				rep.add("warning", n, false, "copy %d: the CRC is valid but the data is not a terminated list of variables: %v", n, err)
			}
		}
	}
	rep.Copies = append(rep.Copies, dc)
	return blob
}

// currentCopy marks the copy U-Boot uses and returns its index, or -1 (an error finding)
// when none is valid.
func currentCopy(rep *doctorReport, f ubootenv.Format, scheme ubootenv.FlagScheme) int {
	states := make([]ubootenv.CopyState, 2)
	for i, c := range rep.Copies {
		states[i].Valid = c.CRCOK
		if c.Flags != nil {
			states[i].Flags = byte(*c.Flags)
		}
	}
	cur := -1
	if f.Redundant {
		cur, _ = ubootenv.Select(states[0], states[1], scheme)
	} else if states[0].Valid {
		cur = 0
	}
	if cur >= 0 {
		rep.Current = cur + 1
		rep.Copies[cur].Current = true
		return cur
	}
	unreadable := true
	for _, c := range rep.Copies {
		unreadable = unreadable && !c.Readable
	}
	rep.add("error", 0, unreadable, "no valid env copy: U-Boot boots with its built-in default environment and fw_printenv fails (or prints the -f defaults)")
	return -1
}

// explainInvalid says what copy i (read, CRC bad) holds, then looks for the env it was
// meant to be: big-endian, another size or header at its offset, another offset.
func explainInvalid(cfg ubootenv.Config, devs []*doctorDevice, i int, blob []byte, cur int, f ubootenv.Format, rep *doctorReport) {
	n, dc := i+1, rep.Copies[i]
	what := "a bad CRC"
	switch {
	case dc.Blank:
		what = "no env (erased, all 0xff)"
	case allBytes(blob, 0):
		what = "no env (all zeros)"
	}
	if cur >= 0 {
		rep.add("warning", n, false, "copy %d has %s (stored CRC %#08x, computed %#08x): copy %d is in use; the next write goes to copy %d (a torn write or a copy never written)",
			n, what, dc.StoredCRC, dc.ComputedCRC, cur+1, n)
	} else {
		rep.add("error", n, false, "copy %d has %s (stored CRC %#08x, computed %#08x)", n, what, dc.StoredCRC, dc.ComputedCRC)
	}
	be := f
	be.BigEndian = true
	if crcValid(blob, be) {
		rep.add("error", n, false, "copy %d: the CRC is valid when read big-endian: the env was written for a big-endian target (mkenvimage -b), libubootenv and this tool read it little-endian", n)
		return
	}
	if probeSizes(devs[i], n, dc.Device, devs[i].resolve(cfg.Devices[i].Offset), f, rep) {
		return
	}
	scanOffsets(cfg, devs, i, f, rep)
}

// probeSizes looks at the copy's offset for an env of another size or with the other header
// (single vs redundant) and reports the first found.
func probeSizes(d *doctorDevice, n int, device string, off int64, f ubootenv.Format, rep *doctorReport) bool {
	size := int64(f.Size)
	for _, s := range append([]int64{size}, doctorSizes...) {
		blob := d.readRaw(off, s)
		if blob == nil {
			continue
		}
		if s != size && crcValid(blob, ubootenv.Format{Size: int(s), Redundant: f.Redundant}) {
			rep.add("error", n, false, "copy %d: a valid env of size %#x is at %#x on %s: the config says %#x",
				n, s, off, device, size)
			return true
		}
		if crcValid(blob, ubootenv.Format{Size: int(s), Redundant: !f.Redundant}) {
			has, want := "single", "redundant (two devices)"
			if !f.Redundant {
				has, want = "redundant (flags byte after the CRC)", "single (one device)"
			}
			rep.add("error", n, false, "copy %d: the env at %#x on %s is a %s env of size %#x, the config describes a %s env of size %#x",
				n, off, device, has, s, want, size)
			return true
		}
	}
	return false
}

// scanOffsets reports valid envs of the configured format elsewhere on copy i's device (not
// where either copy is configured).
func scanOffsets(cfg ubootenv.Config, devs []*doctorDevice, i int, f ubootenv.Format, rep *doctorReport) {
	cd, d := cfg.Devices[i], devs[i]
	off := d.resolve(cd.Offset)
	for _, at := range scanEnv(d, f) {
		if at == off || (len(cfg.Devices) == 2 && cfg.Devices[1-i].Path == cd.Path && devs[1-i].resolve(cfg.Devices[1-i].Offset) == at) {
			continue
		}
		rep.add("error", i+1, false, "copy %d: a valid env (%d variables) is at offset %#x on %s; the config says %#x",
			i+1, countVars(d.readRaw(at, int64(f.Size)), f), at, rep.Copies[i].Device, cd.Offset)
	}
}

// verdict sets the exit code: 0 with a current copy and no error, 3 when every error is a
// device that cannot be read, else 1.
func (r *doctorReport) verdict(cur int) {
	hasErr, onlyIO := false, true
	for _, fd := range r.Findings {
		if fd.Severity == "error" {
			hasErr = true
			onlyIO = onlyIO && fd.io
		}
	}
	switch {
	case !hasErr && cur >= 0:
		r.Healthy, r.ExitCode = true, exitcode.OK
	case hasErr && onlyIO:
		r.ExitCode = exitcode.IO
	default:
		r.ExitCode = exitcode.Invalid
	}
}

// scanEnv returns up to 4 offsets where an env of format f has a valid CRC.
func scanEnv(d *doctorDevice, f ubootenv.Format) []int64 {
	if d.ra == nil {
		return nil
	}
	step := int64(0x1000)
	if d.nand && d.eraseSize > 0 {
		step = int64(d.eraseSize)
	}
	limit := min(d.size, doctorScanLimit+int64(f.Size))
	data := make([]byte, limit)
	if n, err := d.ra.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
		// Fall back to what could be read.
		data = data[:n]
	}
	hdr := f.HeaderSize()
	var out []int64
	for at := int64(0); at+int64(f.Size) <= int64(len(data)) && len(out) < 4; at += step {
		if data[at+int64(hdr)] == 0xff {
			continue
		}
		if d.nand && d.isBad != nil {
			if bad, err := d.isBad(at); err != nil || bad {
				continue
			}
		}
		if crcValid(data[at:at+int64(f.Size)], f) {
			out = append(out, at)
		}
	}
	return out
}

// layoutChecks looks at where the copies sit: overlaps, shared erase blocks, the device end,
// and the MTD sector and NAND bad-block settings.
func layoutChecks(cfg ubootenv.Config, devs []*doctorDevice, rep *doctorReport) {
	size := cfg.EnvSize()
	for i, cd := range cfg.Devices {
		n, d := i+1, devs[i]
		if d.ra == nil || cd.Kind == ubootenv.KindUBI {
			continue
		}
		off := d.resolve(cd.Offset)
		if off < 0 || off+size > d.size {
			rep.add("error", n, false, "copy %d: offset %#x + size %#x is outside %s (%#x bytes)", n, cd.Offset, size, cd.Path, d.size)
		}
		if d.eraseSize <= 0 {
			continue
		}
		es := int64(d.eraseSize)
		sector := cd.SectorSize
		if sector == 0 {
			sector = es
		}
		if sector%es != 0 {
			rep.add("error", n, false, "copy %d: sector size %#x is not a multiple of the erase size %#x of %s", n, cd.SectorSize, es, cd.Path)
			continue
		}
		if cd.SectorSize != 0 && size > sector {
			rep.add("warning", n, false, "copy %d: env size %#x is larger than the sector size %#x: a write spans several sectors; U-Boot's CONFIG_ENV_SECT_SIZE must cover the env", n, size, sector)
		}
		if d.nand {
			need := (size + sector - 1) / sector
			span := max(cd.NumSectors, need)
			good := int64(0)
			bad := 0
			for s := int64(0); s < span; s++ {
				at := off + s*sector
				if at+sector > d.size {
					break
				}
				if b, err := d.isBad(at); err == nil && b {
					bad++
					continue
				}
				good++
			}
			switch {
			case cd.NumSectors == 0 && bad > 0:
				rep.add("error", n, false, "copy %d: a bad block lies under the env at %#x and num_sectors is not set: there is no room to skip it; set num_sectors (5th field) to cover spare blocks", n, off)
			case cd.NumSectors == 0:
				rep.add("warning", n, false, "copy %d: NAND without num_sectors (5th field): no spare block, so a block going bad under the env makes it unusable", n)
			case cd.NumSectors < need:
				rep.add("error", n, false, "copy %d: num_sectors %d is smaller than the %d sector(s) the env needs", n, cd.NumSectors, need)
			case good < need:
				rep.add("error", n, false, "copy %d: only %d good block(s) among the %d configured (%d bad): the env needs %d", n, good, cd.NumSectors, bad, need)
			case good == need && bad == 0 && cd.NumSectors == need:
				rep.add("warning", n, false, "copy %d: num_sectors %d leaves no spare block for bad-block skipping", n, cd.NumSectors)
			}
		}
	}
	if len(cfg.Devices) != 2 {
		return
	}
	a, b := cfg.Devices[0], cfg.Devices[1]
	if a.Path != b.Path || a.Volume != b.Volume || devs[0].ra == nil || a.Kind == ubootenv.KindUBI {
		return
	}
	oa, ob := devs[0].resolve(a.Offset), devs[1].resolve(b.Offset)
	switch {
	case oa == ob:
		if a.Offset != b.Offset {
			rep.add("error", 0, false, "both copies are at offset %#x of %s (one counted from the end): there is no redundancy", oa, a.Path)
		}
	case oa < ob+size && ob < oa+size:
		rep.add("error", 0, false, "the copies overlap on %s (%#x and %#x, size %#x): writing one destroys the other", a.Path, oa, ob, size)
	case devs[0].eraseSize > 0:
		es := int64(devs[0].eraseSize)
		if oa/es <= (ob+size-1)/es && ob/es <= (oa+size-1)/es {
			rep.add("error", 0, false, "the copies share an erase block of %s (%#x and %#x, erase size %#x): erasing one for a write destroys the other", a.Path, oa, ob, es)
		}
	}
}

func printDoctor(w io.Writer, r *doctorReport) {
	kind := "single"
	if r.Redundant {
		kind = "redundant"
	}
	ns := ""
	if r.Namespace != "" {
		ns = " namespace " + r.Namespace
	}
	fmt.Fprintf(w, "config %s%s: %s env, size %#x, flags %s\n", r.Config, ns, kind, r.EnvSize, r.Scheme)
	for _, c := range r.Copies {
		fmt.Fprintf(w, "copy %d: %s (%s) offset %#x size %#x: ", c.Copy, c.Device, c.Kind, c.Offset, c.Size)
		if c.Physical != 0 {
			fmt.Fprintf(w, "found at %#x after skipping bad block(s); ", c.Physical)
		}
		if !c.Readable {
			fmt.Fprintf(w, "not readable: %s\n", c.ReadError)
			continue
		}
		crc := "CRC ok"
		if !c.CRCOK {
			crc = "CRC BAD"
		}
		fmt.Fprintf(w, "%s (stored %#08x, computed %#08x)", crc, c.StoredCRC, c.ComputedCRC)
		if c.Flags != nil {
			fmt.Fprintf(w, ", flags %#02x", *c.Flags)
		}
		if c.CRCOK {
			fmt.Fprintf(w, ", %d variables", c.Variables)
		}
		if c.Blank {
			fmt.Fprint(w, ", erased")
		}
		if c.Current {
			fmt.Fprint(w, ", CURRENT")
		}
		fmt.Fprintln(w)
	}
	for _, f := range r.Findings {
		fmt.Fprintf(w, "%s: %s\n", f.Severity, f.Message)
	}
	switch {
	case r.Healthy:
		fmt.Fprintf(w, "healthy: copy %d is current\n", r.Current)
	case r.ExitCode == exitcode.IO:
		fmt.Fprintln(w, "cannot read the env devices")
	default:
		fmt.Fprintln(w, "problems found")
	}
}
