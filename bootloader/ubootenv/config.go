package ubootenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/aduflash/aduflash/internal/cnum"
	"github.com/aduflash/aduflash/internal/enumname"
)

// DeviceKind is what a fw_env.config device path names.
type DeviceKind int

const (
	// KindFile is a regular file or a block device (including /dev/mmcblkXbootY).
	KindFile DeviceKind = iota
	// KindMTD is a raw MTD character device /dev/mtdN.
	KindMTD
	// KindUBI is a UBI volume: /dev/ubiX_Y, /dev/ubiX:volname or /dev/mtdN:volname (the
	// last one asks for MTD N to be attached to UBI).
	KindUBI
)

var deviceKindNames = []string{KindFile: "file", KindMTD: "mtd", KindUBI: "ubi"}

func (k DeviceKind) String() string { return enumname.Name(k, "DeviceKind", deviceKindNames) }

// Device is one env copy's location from fw_env.config.
type Device struct {
	Path   string // as written, without a ":volname" suffix
	Kind   DeviceKind
	Volume string // UBI volume name of the "path:volname" forms
	// Offset of the copy; negative counts from the end of the device.
	Offset      int64
	EnvSize     int64
	SectorSize  int64 // 0 = default (MTD erase size)
	NumSectors  int64 // 0 = default (as many as the env needs)
	DisableLock bool  // do not MEMUNLOCK/MEMLOCK the MTD
	Line        int   // line in the config file
}

// WriteVar is one entry of a YAML writelist ("name:flags").
type WriteVar struct {
	Name  string
	Flags string
}

// Config is a parsed fw_env.config (one namespace of the YAML form).
type Config struct {
	File      string // for messages
	Namespace string // YAML namespace; "" for the legacy form
	LockFile  string // "" = DefaultLockPath
	WriteList []WriteVar
	Devices   []Device // 1 (single) or 2 (redundant) copies
}

// EnvSize is the env size shared by the devices.
func (c Config) EnvSize() int64 {
	if len(c.Devices) == 0 {
		return 0
	}
	return c.Devices[0].EnvSize
}

// Redundant reports whether the config has two copies.
func (c Config) Redundant() bool { return len(c.Devices) == 2 }

func configErr(file string, line int, format string, args ...any) error {
	return fmt.Errorf("%w: %s:%d: %s", ErrConfig, file, line, fmt.Sprintf(format, args...))
}

var (
	reMTD      = regexp.MustCompile(`^/dev/mtd[0-9]+$`)
	reMTDBlock = regexp.MustCompile(`^/dev/mtdblock`)
	reUBIVol   = regexp.MustCompile(`^/dev/ubi[0-9]+_[0-9]+$`)
	reUBIName  = regexp.MustCompile(`^(/dev/ubi[0-9]+|/dev/mtd[0-9]+):(.+)$`)
)

// classify fills Kind, Path and Volume from a device path.
func classify(d *Device, path, file string) error {
	switch {
	case path == "":
		return configErr(file, d.Line, "empty device path")
	case reMTDBlock.MatchString(path):
		return configErr(file, d.Line, "%s is an MTD block device: it bypasses erase and bad-block handling (fatal on NAND); use the MTD character device /dev/mtd%s", path, strings.TrimPrefix(path, "/dev/mtdblock"))
	case reUBIName.MatchString(path):
		m := reUBIName.FindStringSubmatch(path)
		d.Path, d.Volume, d.Kind = m[1], m[2], KindUBI
	case reUBIVol.MatchString(path):
		d.Path, d.Kind = path, KindUBI
	case reMTD.MatchString(path):
		d.Path, d.Kind = path, KindMTD
	default:
		d.Path, d.Kind = path, KindFile
	}
	return nil
}

// ParseConfig parses the legacy fw_env.config form: one or two lines of
// "device offset env_size [sector_size [num_sectors [disable_lock]]]", '#' comments.
// As in libubootenv, offset is a C integer (0x hex, leading-0 octal, decimal, may be
// negative) while env_size, sector_size and num_sectors are always hexadecimal.
// file names the source in error messages.
func ParseConfig(file string, data []byte) (Config, error) {
	cfg := Config{File: file}
	for i, raw := range strings.Split(string(data), "\n") {
		line := i + 1
		if j := strings.IndexByte(raw, '#'); j >= 0 {
			raw = raw[:j]
		}
		fields := strings.Fields(raw)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 {
			return Config{}, configErr(file, line, "need at least device, offset and env size, got %d field(s)", len(fields))
		}
		if len(fields) > 6 {
			return Config{}, configErr(file, line, "%d fields, at most 6 (device offset env_size sector_size num_sectors disable_lock)", len(fields))
		}
		if len(cfg.Devices) == 2 {
			return Config{}, configErr(file, line, "a third device: at most two copies")
		}
		d := Device{Line: line}
		if err := classify(&d, fields[0], file); err != nil {
			return Config{}, err
		}
		var err error
		if d.Offset, err = cnum.ParseInt(fields[1]); err != nil {
			return Config{}, configErr(file, line, "offset: %v", err)
		}
		if d.EnvSize, err = cnum.ParseHex(fields[2]); err != nil {
			return Config{}, configErr(file, line, "env size: %v", err)
		}
		if len(fields) > 3 {
			if d.SectorSize, err = cnum.ParseHex(fields[3]); err != nil {
				return Config{}, configErr(file, line, "sector size: %v", err)
			}
		}
		if len(fields) > 4 {
			if d.NumSectors, err = cnum.ParseHex(fields[4]); err != nil {
				return Config{}, configErr(file, line, "number of sectors: %v", err)
			}
		}
		if len(fields) > 5 {
			v, err := strconv.Atoi(fields[5])
			if err != nil {
				return Config{}, configErr(file, line, "disable_lock: %q is not a decimal number", fields[5])
			}
			d.DisableLock = v != 0
		}
		cfg.Devices = append(cfg.Devices, d)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

const maxEnvSize = 64 << 20

func (c *Config) validate() error {
	if len(c.Devices) == 0 {
		return fmt.Errorf("%w: %s: no device configured", ErrConfig, c.File)
	}
	for _, d := range c.Devices {
		minSize := int64(5)
		if len(c.Devices) == 1 {
			minSize = 4
		}
		if d.EnvSize <= minSize || d.EnvSize > maxEnvSize {
			return configErr(c.File, d.Line, "env size %#x out of range (%#x..%#x)", d.EnvSize, minSize+1, maxEnvSize)
		}
		if d.SectorSize < 0 || d.NumSectors < 0 || d.NumSectors > 1<<20 {
			return configErr(c.File, d.Line, "sector size %#x / number of sectors %#x out of range", d.SectorSize, d.NumSectors)
		}
		if d.Kind == KindUBI && d.Offset != 0 {
			return configErr(c.File, d.Line, "UBI volume %s with offset %#x: a UBI env starts at 0", d.Path, d.Offset)
		}
	}
	if len(c.Devices) == 2 {
		a, b := c.Devices[0], c.Devices[1]
		if a.EnvSize != b.EnvSize {
			return configErr(c.File, b.Line, "env size %#x differs from copy 1's %#x (line %d)", b.EnvSize, a.EnvSize, a.Line)
		}
		if a.Kind != b.Kind {
			return configErr(c.File, b.Line, "device type %s differs from copy 1's %s (line %d)", b.Kind, a.Kind, a.Line)
		}
		if a.Path == b.Path && a.Volume == b.Volume && a.Offset == b.Offset {
			return configErr(c.File, b.Line, "copy 2 is at the same place as copy 1 (line %d)", a.Line)
		}
	}
	return nil
}

// ParseConfigYAML parses libubootenv's YAML form; it returns one Config per namespace, in
// file order:
//
//	uboot:
//	  size: 0x4000
//	  lockfile: /var/lock/fw_printenv.lock
//	  devices:
//	    - path: /dev/mtd0
//	      offset: 0xA0000
//	      sectorsize: 0x10000
//	      disablelock: yes
//	  writelist:
//	    - bootcount:dw
func ParseConfigYAML(file string, data []byte) ([]Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, configErr(file, doc.Line, "top level must be a mapping of namespaces")
	}
	var out []Config
	err := eachPair(doc.Content[0], func(k, v *yaml.Node) error {
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return configErr(file, k.Line, "namespace name must be a non-empty string")
		}
		cfg, err := parseNamespace(file, k.Value, v)
		out = append(out, cfg)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s: no namespace", ErrConfig, file)
	}
	return out, nil
}

func yamlScalar(file string, n *yaml.Node, what string) (string, error) {
	if n.Kind != yaml.ScalarNode {
		return "", configErr(file, n.Line, "%s must be a scalar", what)
	}
	return n.Value, nil
}

func yamlUint(file string, n *yaml.Node, what string) (int64, error) {
	s, err := yamlScalar(file, n, what)
	if err != nil {
		return 0, err
	}
	v, err := cnum.ParseInt(s)
	if err != nil || v < 0 {
		return 0, configErr(file, n.Line, "%s: %q is not an unsigned number", what, s)
	}
	return v, nil
}

// eachPair calls f with every key and value of the YAML mapping n, in order, and stops at
// the first error.
func eachPair(n *yaml.Node, f func(k, v *yaml.Node) error) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if err := f(n.Content[i], n.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

func parseNamespace(file, name string, n *yaml.Node) (Config, error) {
	cfg := Config{File: file, Namespace: name}
	if n.Kind != yaml.MappingNode {
		return Config{}, configErr(file, n.Line, "namespace %s must be a mapping", name)
	}
	var size int64
	var devNodes []*yaml.Node
	err := eachPair(n, func(k, v *yaml.Node) error {
		var err error
		switch k.Value {
		case "size":
			size, err = yamlUint(file, v, "size")
		case "lockfile":
			cfg.LockFile, err = yamlScalar(file, v, "lockfile")
		case "devices":
			if v.Kind != yaml.SequenceNode {
				return configErr(file, v.Line, "devices must be a list")
			}
			devNodes = v.Content
		case "writelist":
			cfg.WriteList, err = parseWriteList(file, v)
		default:
			return configErr(file, k.Line, "unknown key %q in namespace %s (size, lockfile, devices, writelist)", k.Value, name)
		}
		return err
	})
	if err != nil {
		return Config{}, err
	}
	if len(devNodes) > 2 {
		return Config{}, configErr(file, devNodes[2].Line, "a third device: at most two copies")
	}
	for _, dn := range devNodes {
		d, err := parseDevice(file, dn, size)
		if err != nil {
			return Config{}, err
		}
		cfg.Devices = append(cfg.Devices, d)
	}
	if len(cfg.Devices) == 0 {
		return Config{}, configErr(file, n.Line, "namespace %s has no devices", name)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// parseWriteList reads a writelist: name:flags entries, each name once.
func parseWriteList(file string, v *yaml.Node) ([]WriteVar, error) {
	if v.Kind != yaml.SequenceNode {
		return nil, configErr(file, v.Line, "writelist must be a list")
	}
	var list []WriteVar
	seen := map[string]bool{}
	for _, w := range v.Content {
		s, err := yamlScalar(file, w, "writelist entry")
		if err != nil {
			return nil, err
		}
		nm, fl, ok := strings.Cut(s, ":")
		if !ok || nm == "" || fl == "" {
			return nil, configErr(file, w.Line, "writelist entry %q must be name:flags", s)
		}
		if seen[nm] {
			return nil, configErr(file, w.Line, "writelist entry %q repeated", nm)
		}
		seen[nm] = true
		list = append(list, WriteVar{Name: nm, Flags: fl})
	}
	return list, nil
}

// parseDevice reads one entry of devices, of a namespace whose env is size bytes.
func parseDevice(file string, dn *yaml.Node, size int64) (Device, error) {
	d := Device{Line: dn.Line, EnvSize: size}
	if dn.Kind != yaml.MappingNode {
		return Device{}, configErr(file, dn.Line, "device must be a mapping")
	}
	path := ""
	err := eachPair(dn, func(k, v *yaml.Node) error {
		var err error
		switch k.Value {
		case "path":
			path, err = yamlScalar(file, v, "path")
		case "offset":
			d.Offset, err = yamlUint(file, v, "offset")
		case "sectorsize":
			d.SectorSize, err = yamlUint(file, v, "sectorsize")
		case "disablelock":
			d.DisableLock, err = yamlYesNo(file, v, "disablelock")
		default:
			err = configErr(file, k.Line, "unknown device key %q (path, offset, sectorsize, disablelock)", k.Value)
		}
		return err
	})
	if err != nil {
		return Device{}, err
	}
	if err := classify(&d, path, file); err != nil {
		return Device{}, err
	}
	return d, nil
}

// yamlYesNo reads yes or true, no or false.
func yamlYesNo(file string, n *yaml.Node, what string) (bool, error) {
	s, err := yamlScalar(file, n, what)
	if err != nil {
		return false, err
	}
	switch s {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, configErr(file, n.Line, "%s: %q is not yes or no", what, s)
}

// IsYAML reports whether a config file's content is the YAML form: a .yaml/.yml name, a
// "---" start, or a first significant line that is a "key:" mapping entry.
func IsYAML(file string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".yaml", ".yml":
		return true
	}
	for _, l := range bytes.Split(data, []byte("\n")) {
		t := strings.TrimSpace(string(l))
		if t == "" || t[0] == '#' {
			continue
		}
		if t == "---" {
			return true
		}
		first := strings.Fields(t)[0]
		return strings.HasSuffix(first, ":")
	}
	return false
}

// LoadConfig reads a config file in either form. namespace selects a YAML namespace ("" =
// the first); it must be "" for the legacy form.
func LoadConfig(path, namespace string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if !IsYAML(path, data) {
		if namespace != "" {
			return Config{}, fmt.Errorf("%w: %s: namespace %q requested but the file is in the legacy form", ErrConfig, path, namespace)
		}
		return ParseConfig(path, data)
	}
	cfgs, err := ParseConfigYAML(path, data)
	if err != nil {
		return Config{}, err
	}
	if namespace == "" {
		return cfgs[0], nil
	}
	for _, c := range cfgs {
		if c.Namespace == namespace {
			return c, nil
		}
	}
	return Config{}, fmt.Errorf("%w: %s: no namespace %q", ErrConfig, path, namespace)
}
