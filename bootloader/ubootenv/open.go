package ubootenv

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// OpenOption adjusts Open.
type OpenOption func(*openSettings)

type openSettings struct {
	opts      Options
	sysfsRoot string
	lockSet   bool
}

// WithSysfsRoot sets where sysfs is mounted (default "/sys"); tests pass a fake tree.
func WithSysfsRoot(root string) OpenOption { return func(s *openSettings) { s.sysfsRoot = root } }

// WithLockPath overrides the lock file ("" disables locking).
func WithLockPath(path string) OpenOption {
	return func(s *openSettings) { s.opts.LockPath, s.lockSet = path, true }
}

// WithDefaults sets the default env used when no copy is valid (even if vars is empty).
func WithDefaults(vars []Var) OpenOption {
	return func(s *openSettings) { s.opts.Defaults, s.opts.HasDefaults = vars, true }
}

// WithScheme overrides the flag scheme chosen from the storage type.
func WithScheme(sc FlagScheme) OpenOption { return func(s *openSettings) { s.opts.Scheme = &sc } }

// WithBigEndian stores and checks the CRC big-endian.
func WithBigEndian() OpenOption { return func(s *openSettings) { s.opts.Format.BigEndian = true } }

// WithPadFF pads written copies with 0xFF instead of 0x00.
func WithPadFF() OpenOption { return func(s *openSettings) { s.opts.Format.PadFF = true } }

// Open opens the env described by cfg. Files and block devices (with force_ro handling
// for eMMC boot partitions on Linux) are opened here; raw MTD and UBI devices return
// ErrUnsupported — open them with package mtd and call New with NewMTDStorage or
// UBIStorage. The lock file is cfg.LockFile, else DefaultLockPath, unless WithLockPath.
func Open(cfg Config, options ...OpenOption) (*Env, error) {
	s := openSettings{sysfsRoot: "/sys"}
	for _, o := range options {
		o(&s)
	}
	if !s.lockSet {
		s.opts.LockPath = cfg.LockFile
		if s.opts.LockPath == "" {
			s.opts.LockPath = DefaultLockPath
		}
	}
	if len(cfg.Devices) != 1 && len(cfg.Devices) != 2 {
		return nil, fmt.Errorf("%w: %s: %d devices, need 1 or 2", ErrConfig, cfg.File, len(cfg.Devices))
	}
	s.opts.Format.Size = int(cfg.EnvSize())
	for _, w := range cfg.WriteList {
		s.opts.WriteList = append(s.opts.WriteList, w.Name)
	}
	var storages []Storage
	for i, d := range cfg.Devices {
		st, err := openStorage(d, s.sysfsRoot)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: copy %d: %w", cfg.File, d.Line, i+1, err)
		}
		storages = append(storages, st)
	}
	return New(s.opts, storages...)
}

var reMMCBoot = regexp.MustCompile(`^mmcblk[0-9]+boot[0-9]+$`)

// ForceROPath returns the sysfs force_ro file of an eMMC boot partition
// (/dev/mmcblkXbootY → <sysfsRoot>/block/mmcblkXbootY/force_ro), or "" for other paths.
func ForceROPath(sysfsRoot, devPath string) string {
	if !strings.HasPrefix(devPath, "/dev/") {
		return ""
	}
	base := filepath.Base(devPath)
	if !reMMCBoot.MatchString(base) {
		return ""
	}
	return filepath.Join(sysfsRoot, "block", base, "force_ro")
}

// ParseDefaults parses a default env in fw_setenv -f / fw_printenv -f format: one
// name=value per line; empty lines, lines starting with '#' and lines without '=' are
// skipped; an empty value deletes (the variable is left out).
func ParseDefaults(data []byte) ([]Var, error) {
	var vars []Var
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if err := CheckName(name); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if err := CheckValue(name, value); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		idx := -1
		for j, v := range vars {
			if v.Name == name {
				idx = j
			}
		}
		switch {
		case value == "" && idx >= 0:
			vars = append(vars[:idx], vars[idx+1:]...)
		case value == "":
		case idx >= 0:
			vars[idx].Value = value
		default:
			vars = append(vars, Var{Name: name, Value: value})
		}
	}
	return vars, nil
}
