package ubootenv

import (
	"errors"
	"fmt"
	"slices"
)

// Options configures an Env beyond its storages.
type Options struct {
	// Format of each copy; Redundant is set from the number of storages.
	Format Format
	// Scheme overrides the flag scheme; nil means the storages' DefaultScheme (serial
	// unless a storage is NOR MTD).
	Scheme *FlagScheme
	// Defaults is the env used when no copy is valid (like fw_printenv -f); HasDefaults
	// must be set for an empty default env to count. Without defaults, Open fails with
	// ErrNoValidCopy on a blank or corrupt env.
	Defaults    []Var
	HasDefaults bool
	// LockPath is the flock(2) file held during reads and read-modify-write; "" disables
	// locking. libubootenv's default is DefaultLockPath.
	LockPath string
	// WriteList, when non-empty, is the set of variable names Set may change (libubootenv's
	// YAML writelist).
	WriteList []string
	// OverwriteInvalid lets Set write when no copy is valid and a copy is not blank: what is
	// there is lost. Without it Set refuses with ErrNotBlank, since a config with the wrong
	// size, offset or header reads a good env as corrupt.
	OverwriteInvalid bool
}

// DefaultLockPath is libubootenv's lock file.
const DefaultLockPath = "/var/lock/fw_printenv.lock"

// Change is one element of a transaction; an empty Value deletes the variable.
type Change struct {
	Name  string
	Value string
}

// CopyInfo describes one copy as last read.
type CopyInfo struct {
	ReadErr     error  // the storage failed; the copy counts as invalid
	CRCOK       bool   // stored CRC matches
	StoredCRC   uint32 // as stored
	ComputedCRC uint32 // over the data area
	Flags       byte   // redundant flags byte
	ParseErr    error  // CRC fine, but the data area is not a terminated list
	Blank       bool   // every byte 0xff (erased) or every byte 0x00: never written
}

// Info is the state of the env as last read: which copy is current and why.
type Info struct {
	Redundant     bool
	Scheme        FlagScheme
	Current       int  // index of the current copy (0 or 1); -1 when using defaults
	UsingDefaults bool // no copy valid; the default env is in use
	Copies        []CopyInfo
}

// Env is a U-Boot environment on one or two storages. It is not safe for concurrent use;
// the lock file serialises processes.
type Env struct {
	st     []Storage
	opts   Options
	scheme FlagScheme
	vars   []Var
	info   Info
	// invalid says why no copy is valid (ErrNoValidCopy), when none is.
	invalid error
}

// New reads the env from one (single) or two (redundant) storages.
func New(opts Options, storages ...Storage) (*Env, error) {
	if len(storages) != 1 && len(storages) != 2 {
		return nil, fmt.Errorf("%w: %d storages given, need 1 or 2", ErrConfig, len(storages))
	}
	opts.Format.Redundant = len(storages) == 2
	if err := opts.Format.check(); err != nil {
		return nil, err
	}
	for _, v := range opts.Defaults {
		if err := CheckName(v.Name); err != nil {
			return nil, fmt.Errorf("default env: %w", err)
		}
		if err := CheckValue(v.Name, v.Value); err != nil {
			return nil, fmt.Errorf("default env: %w", err)
		}
	}
	e := &Env{st: storages, opts: opts, scheme: FlagsSerial}
	if opts.Scheme != nil {
		e.scheme = *opts.Scheme
	} else if ds, ok := storages[0].(DefaultSchemer); ok {
		e.scheme = ds.DefaultScheme()
	}
	if e.scheme == FlagsBoolean && opts.Format.Redundant {
		for i, s := range storages {
			if _, ok := s.(FlagWriter); !ok {
				return nil, fmt.Errorf("%w: copy %d: boolean flags need a storage that can program the flags byte in place", ErrConfig, i+1)
			}
		}
	}
	if err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

// Reload re-reads the storages under the lock.
func (e *Env) Reload() error {
	unlock, err := lockFile(e.opts.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	return e.load()
}

func (e *Env) load() error {
	f := e.opts.Format
	info := Info{Redundant: f.Redundant, Scheme: e.scheme, Current: -1}
	blocks := make([]Block, len(e.st))
	states := make([]CopyState, 2)
	var errs []error
	for i, s := range e.st {
		var ci CopyInfo
		buf := make([]byte, f.Size)
		if err := s.ReadCopy(buf); err != nil {
			ci.ReadErr = err
			errs = append(errs, fmt.Errorf("copy %d: %w", i+1, err))
		} else {
			ci.Blank = blank(buf)
			b, err := Decode(buf, f)
			ci.StoredCRC = b.CRC
			ci.Flags = b.Flags
			_, _, ci.ComputedCRC, _ = CRCOK(buf, f)
			switch {
			case err == nil:
				ci.CRCOK = true
				blocks[i] = b
				states[i] = CopyState{Valid: true, Flags: b.Flags}
			case errors.Is(err, ErrBadCRC):
				errs = append(errs, fmt.Errorf("copy %d: %w", i+1, err))
			default:
				ci.CRCOK = true
				ci.ParseErr = err
				errs = append(errs, fmt.Errorf("copy %d: %w", i+1, err))
			}
		}
		info.Copies = append(info.Copies, ci)
	}
	cur := -1
	if f.Redundant {
		cur, _ = Select(states[0], states[1], e.scheme)
	} else if states[0].Valid {
		cur = 0
	}
	e.invalid = nil
	if cur < 0 {
		e.invalid = fmt.Errorf("%w: %w", ErrNoValidCopy, errors.Join(errs...))
		if !e.opts.HasDefaults && e.opts.Defaults == nil {
			return e.invalid
		}
		info.UsingDefaults = true
		e.vars = dedupe(e.opts.Defaults)
	} else {
		info.Current = cur
		e.vars = blocks[cur].Vars
	}
	e.info = info
	return nil
}

// blank reports whether a copy holds nothing: all 0xff (erased flash) or all 0x00.
func blank(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	for _, x := range b {
		if x != b[0] {
			return false
		}
	}
	return b[0] == 0xff || b[0] == 0x00
}

// checkOverwrite refuses a write when no copy is valid but some copy holds data: it may be
// a good env that the config's size, offset or header misreads. Blank copies are a first
// write; Options.OverwriteInvalid accepts the loss.
func (e *Env) checkOverwrite() error {
	if e.info.Current >= 0 || e.opts.OverwriteInvalid {
		return nil
	}
	for _, c := range e.info.Copies {
		if !c.Blank {
			return fmt.Errorf("%w: %w", ErrNotBlank, e.invalid)
		}
	}
	return nil
}

func dedupe(vars []Var) []Var {
	var out []Var
	idx := map[string]int{}
	for _, v := range vars {
		if i, ok := idx[v.Name]; ok {
			out[i].Value = v.Value
			continue
		}
		idx[v.Name] = len(out)
		out = append(out, v)
	}
	return out
}

// Get returns a variable's value.
func (e *Env) Get(name string) (string, bool) {
	for _, v := range e.vars {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

// All returns the variables in stored order (sorted by name in anything U-Boot,
// libubootenv or this package wrote).
func (e *Env) All() []Var { return slices.Clone(e.vars) }

// Info returns the state of the copies as last read.
func (e *Env) Info() Info {
	i := e.info
	i.Copies = slices.Clone(i.Copies)
	return i
}

// Set applies changes as ONE transaction: under the lock it re-reads the copies, applies
// every change to the current env, and writes one copy — the non-current copy of a
// redundant env with the next flags (serial: current+1; boolean: ACTIVE, after which the
// old copy's flags byte is programmed to OBSOLETE in place), or the single copy in place.
// Invalid names or values, a writelist refusal or an env that does not fit fail before
// anything is written. With no valid copy, the transaction starts from the default env
// (if any) and writes copy 1, but only over blank copies (all 0xff or all 0x00) unless
// Options.OverwriteInvalid is set: otherwise it fails with ErrNotBlank and writes nothing.
func (e *Env) Set(changes ...Change) error {
	allowed := map[string]bool{}
	for _, n := range e.opts.WriteList {
		allowed[n] = true
	}
	for _, c := range changes {
		if err := CheckName(c.Name); err != nil {
			return err
		}
		if err := CheckValue(c.Name, c.Value); err != nil {
			return err
		}
		if len(allowed) > 0 && !allowed[c.Name] {
			return fmt.Errorf("%w: %q", ErrNotWritable, c.Name)
		}
	}
	unlock, err := lockFile(e.opts.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	if err := e.load(); err != nil {
		return err
	}
	if err := e.checkOverwrite(); err != nil {
		return err
	}
	vars := slices.Clone(e.vars)
	for _, c := range changes {
		i := slices.IndexFunc(vars, func(v Var) bool { return v.Name == c.Name })
		switch {
		case c.Value == "" && i >= 0:
			vars = slices.Delete(vars, i, i+1)
		case c.Value == "":
		case i >= 0:
			vars[i].Value = c.Value
		default:
			vars = append(vars, Var{Name: c.Name, Value: c.Value})
		}
	}
	vars = SortVars(vars)
	f := e.opts.Format
	cur := e.info.Current
	target, flags := 0, byte(1)
	if f.Redundant && cur >= 0 {
		target = 1 - cur
		flags = NextFlags(e.info.Copies[cur].Flags, e.scheme)
	}
	blob, err := Encode(vars, f, flags)
	if err != nil {
		return err
	}
	if err := e.st[target].WriteCopy(blob); err != nil {
		return fmt.Errorf("copy %d: %w", target+1, err)
	}
	if f.Redundant && e.scheme == FlagsBoolean && cur >= 0 {
		// The new copy is complete and ACTIVE. A power cut before this byte is programmed
		// leaves both copies ACTIVE (1/1): U-Boot then takes copy 1, i.e. the old or the
		// new state, never neither — the same window as U-Boot's own saveenv.
		if err := e.st[cur].(FlagWriter).WriteFlag(FlagObsolete); err != nil {
			return fmt.Errorf("copy %d: mark obsolete: %w", cur+1, err)
		}
	}
	return e.load()
}
