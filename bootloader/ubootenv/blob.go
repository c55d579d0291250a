package ubootenv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
)

// Var is one environment variable.
type Var struct {
	Name  string
	Value string
}

// Format describes the byte layout of one env copy.
type Format struct {
	// Size is the whole copy in bytes (env_size of fw_env.config), header included.
	Size int
	// Redundant selects the [crc32][flags][data] header; otherwise [crc32][data].
	Redundant bool
	// BigEndian stores the CRC big-endian (mkenvimage -b); default little-endian.
	BigEndian bool
	// PadFF pads the data area with 0xFF (like mkenvimage without -p) when encoding;
	// default 0x00 (like U-Boot's saveenv). Both are valid for readers.
	PadFF bool
}

// HeaderSize is 4 for a single env and 5 for a redundant one.
func (f Format) HeaderSize() int {
	if f.Redundant {
		return 5
	}
	return 4
}

// DataSize is the data area (CRC-covered) size, or a negative number for a size too
// small to hold the header.
func (f Format) DataSize() int { return f.Size - f.HeaderSize() }

func (f Format) check() error {
	if f.Size < f.HeaderSize()+1 {
		return fmt.Errorf("%w: env size %d is smaller than header (%d) + terminator", ErrTooLarge, f.Size, f.HeaderSize())
	}
	return nil
}

func (f Format) order() binary.ByteOrder {
	if f.BigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// Block is a decoded env copy.
type Block struct {
	Vars []Var // in blob order; duplicates collapsed (first position, last value)
	// Flags is the redundant flags byte (0 for a single env).
	Flags byte
	// CRC is the stored CRC.
	CRC uint32
}

// CheckName reports whether name can be stored: non-empty, no '=' and no NUL.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidVar)
	}
	if i := indexAny(name, "=\x00"); i >= 0 {
		return fmt.Errorf("%w: name %q contains %q at %d", ErrInvalidVar, name, name[i], i)
	}
	return nil
}

// CheckValue reports whether value can be stored (no NUL).
func CheckValue(name, value string) error {
	if i := bytes.IndexByte([]byte(value), 0); i >= 0 {
		return fmt.Errorf("%w: value of %q contains NUL at %d", ErrInvalidVar, name, i)
	}
	return nil
}

func indexAny(s, chars string) int {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return i
			}
		}
	}
	return -1
}

// SortVars returns a copy of vars sorted by name (byte-wise, as U-Boot's saveenv and
// libubootenv store them). The sort is stable.
func SortVars(vars []Var) []Var {
	out := append([]Var(nil), vars...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Encode builds one env copy of f.Size bytes: variables sorted by name, each
// "name=value\0", a terminating "\0", padding, CRC over the whole data area; flags is
// stored at offset 4 of a redundant copy. Duplicate names are an error.
func Encode(vars []Var, f Format, flags byte) ([]byte, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	sorted := SortVars(vars)
	need := 1 // final NUL
	for i, v := range sorted {
		if err := CheckName(v.Name); err != nil {
			return nil, err
		}
		if err := CheckValue(v.Name, v.Value); err != nil {
			return nil, err
		}
		if i > 0 && sorted[i-1].Name == v.Name {
			return nil, fmt.Errorf("%w: duplicate name %q", ErrInvalidVar, v.Name)
		}
		need += len(v.Name) + 1 + len(v.Value) + 1
	}
	if need > f.DataSize() {
		return nil, fmt.Errorf("%w: %d bytes of variables need a data area of %d, env size %d leaves %d", ErrTooLarge, need, need, f.Size, f.DataSize())
	}
	blob := make([]byte, f.Size)
	data := blob[f.HeaderSize():]
	n := 0
	for _, v := range sorted {
		n += copy(data[n:], v.Name)
		data[n] = '='
		n++
		n += copy(data[n:], v.Value)
		data[n] = 0
		n++
	}
	data[n] = 0
	n++
	if f.PadFF {
		for i := n; i < len(data); i++ {
			data[i] = 0xFF
		}
	}
	if f.Redundant {
		blob[4] = flags
	}
	f.order().PutUint32(blob[0:4], crc32.ChecksumIEEE(data))
	return blob, nil
}

// CRCOK reports whether blob's stored CRC matches its data area, and returns both CRCs.
func CRCOK(blob []byte, f Format) (ok bool, stored, computed uint32, err error) {
	if err := f.check(); err != nil {
		return false, 0, 0, err
	}
	if len(blob) != f.Size {
		return false, 0, 0, fmt.Errorf("%w: blob is %d bytes, env size is %d", ErrCorrupt, len(blob), f.Size)
	}
	stored = f.order().Uint32(blob[0:4])
	computed = crc32.ChecksumIEEE(blob[f.HeaderSize():])
	return stored == computed, stored, computed, nil
}

// Decode checks the CRC of one env copy and parses its variables. Parsing stops at the
// first empty string (the double NUL) or at the end of the data area; entries without '='
// or with an empty name are skipped, as libubootenv does; a duplicate name keeps its
// first position and takes the last value.
func Decode(blob []byte, f Format) (Block, error) {
	ok, stored, computed, err := CRCOK(blob, f)
	if err != nil {
		return Block{}, err
	}
	b := Block{CRC: stored}
	if f.Redundant {
		b.Flags = blob[4]
	}
	if !ok {
		return b, fmt.Errorf("%w: stored %#08x, computed %#08x", ErrBadCRC, stored, computed)
	}
	vars, err := parseData(blob[f.HeaderSize():], f.HeaderSize())
	if err != nil {
		return b, err
	}
	b.Vars = vars
	return b, nil
}

// parseData parses "name=value\0...\0\0"; base is the data area's offset for messages.
func parseData(data []byte, base int) ([]Var, error) {
	var vars []Var
	index := map[string]int{}
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: entry at offset %d is not NUL-terminated before the end of the data area", ErrCorrupt, base+off)
		}
		if end == 0 {
			return vars, nil
		}
		entry := data[off : off+end]
		off += end + 1
		eq := bytes.IndexByte(entry, '=')
		if eq <= 0 {
			continue
		}
		name, value := string(entry[:eq]), string(entry[eq+1:])
		if i, dup := index[name]; dup {
			vars[i].Value = value
			continue
		}
		index[name] = len(vars)
		vars = append(vars, Var{Name: name, Value: value})
	}
	return vars, nil
}
