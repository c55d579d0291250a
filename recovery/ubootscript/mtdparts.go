package ubootscript

import (
	"fmt"
	"strconv"
	"strings"
)

// MTDPart is one partition of an mtdparts definition.
type MTDPart struct {
	Name   string
	Offset int64 // bytes from the start of the device
	Size   int64 // bytes; -1: the rest of the device ("-")
}

// MTDDevice is one device of an mtdparts definition: its mtd-id and its partitions.
type MTDDevice struct {
	ID    string // the mtd-id ("gpmi-nand", "spi0.0"), as mtdids maps U-Boot devices to it
	Parts []MTDPart
}

// end returns where the partition ends (for "-": beyond any device).
func (p MTDPart) end() int64 {
	if p.Size < 0 {
		return 1 << 62
	}
	return p.Offset + p.Size
}

// ParseMTDParts parses the Linux/U-Boot mtdparts syntax (the kernel's mtdparts= argument and
// U-Boot's mtdparts variable, with or without the leading "mtdparts="):
//
//	<mtd-id>:<size>[@<offset>](<name>)[ro][lk][,...][;<mtd-id>:...]
//
// A size or offset is a C integer (0x hex) with an optional k, m or g suffix; a size of "-"
// takes the rest of the device and ends its list. A partition without @offset starts where
// the previous one ends. Every partition needs a name (the slots name partitions), unique in
// its device, and partitions may not overlap.
func ParseMTDParts(s string) ([]MTDDevice, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "mtdparts=")
	if s == "" {
		return nil, fmt.Errorf("mtdparts: empty")
	}
	var devs []MTDDevice
	for _, def := range strings.Split(s, ";") {
		id, list, ok := strings.Cut(def, ":")
		if !ok || id == "" || list == "" {
			return nil, fmt.Errorf("mtdparts: %q: want <mtd-id>:<partitions>", def)
		}
		for _, d := range devs {
			if d.ID == id {
				return nil, fmt.Errorf("mtdparts: device %q defined twice", id)
			}
		}
		parts, err := parsePartList(list)
		if err != nil {
			return nil, fmt.Errorf("mtdparts: %s: %w", id, err)
		}
		devs = append(devs, MTDDevice{ID: id, Parts: parts})
	}
	return devs, nil
}

// parsePartList parses the comma-separated partitions of one device.
func parsePartList(list string) ([]MTDPart, error) {
	var parts []MTDPart
	var next int64
	for _, def := range strings.Split(list, ",") {
		if len(parts) > 0 && parts[len(parts)-1].Size < 0 {
			return nil, fmt.Errorf("%q follows a partition that takes the rest of the device", def)
		}
		p, err := parsePart(def, next)
		if err != nil {
			return nil, err
		}
		for _, q := range parts {
			if q.Name == p.Name {
				return nil, fmt.Errorf("partition name %q used twice", p.Name)
			}
			if p.Offset < q.Offset+q.Size && q.Offset < p.end() {
				return nil, fmt.Errorf("partition %q at %#x overlaps %q (%#x..%#x)", p.Name, p.Offset, q.Name, q.Offset, q.Offset+q.Size)
			}
		}
		parts = append(parts, p)
		next = p.Offset + p.Size
	}
	return parts, nil
}

// parsePart parses <size>[@<offset>](<name>)[ro][lk]; next is where it starts without
// @offset.
func parsePart(def string, next int64) (MTDPart, error) {
	spec, rest, ok := strings.Cut(def, "(")
	name, flags, ok2 := strings.Cut(rest, ")")
	if !ok || !ok2 || name == "" || strings.ContainsAny(name, "(),;:") {
		return MTDPart{}, fmt.Errorf("%q: want <size>[@<offset>](<name>)", def)
	}
	for f := flags; f != ""; {
		switch {
		case strings.HasPrefix(f, "ro"), strings.HasPrefix(f, "lk"):
			f = f[2:]
		default:
			return MTDPart{}, fmt.Errorf("%q: unknown flags %q (ro, lk)", def, flags)
		}
	}
	size, off, hasOff := strings.Cut(spec, "@")
	p := MTDPart{Name: name, Offset: next, Size: -1}
	var err error
	if size != "-" {
		if p.Size, err = memparse(size); err != nil || p.Size == 0 {
			return MTDPart{}, fmt.Errorf("%q: bad size %q", def, size)
		}
	}
	if hasOff {
		if p.Offset, err = memparse(off); err != nil {
			return MTDPart{}, fmt.Errorf("%q: bad offset %q", def, off)
		}
	}
	if p.Size > 0 && p.Offset > 1<<62-p.Size {
		return MTDPart{}, fmt.Errorf("%q: ends beyond any device", def)
	}
	return p, nil
}

// memparse reads a C integer with an optional k, m or g (binary) suffix, like the kernel's
// and U-Boot's memparse/ustrtoull.
func memparse(s string) (int64, error) {
	mult := int64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'k', 'K':
			mult, s = 1<<10, s[:n-1]
		case 'm', 'M':
			mult, s = 1<<20, s[:n-1]
		case 'g', 'G':
			mult, s = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(s, 0, 64)
	if err != nil || v < 0 || v > (1<<62)/mult || strings.ContainsAny(s, "+-_") {
		return 0, fmt.Errorf("%q is not a size", s)
	}
	return v * mult, nil
}

// MTDID is one entry of U-Boot's mtdids variable: a U-Boot device ("nand0", "nor0") and the
// mtd-id mtdparts calls it by.
type MTDID struct {
	Type   string // "nand", "nor", "spi-nand", "onenand"
	Number int
	ID     string
}

// ParseMTDIDs parses U-Boot's mtdids syntax: <type><num>=<mtd-id>[,...].
func ParseMTDIDs(s string) ([]MTDID, error) {
	var out []MTDID
	for _, e := range strings.Split(strings.TrimSpace(s), ",") {
		dev, id, ok := strings.Cut(e, "=")
		i := strings.IndexAny(dev, "0123456789")
		if !ok || id == "" || i <= 0 {
			return nil, fmt.Errorf("mtdids: %q: want <type><number>=<mtd-id>, e.g. nand0=gpmi-nand", e)
		}
		n, err := strconv.Atoi(dev[i:])
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mtdids: %q: bad device number", e)
		}
		m := MTDID{Type: dev[:i], Number: n, ID: id}
		switch m.Type {
		case "nand", "nor", "spi-nand", "onenand":
		default:
			return nil, fmt.Errorf("mtdids: %q: unknown device type %q (nand, nor, spi-nand, onenand)", e, m.Type)
		}
		for _, o := range out {
			if o.ID == m.ID || o.Type == m.Type && o.Number == m.Number {
				return nil, fmt.Errorf("mtdids: %q: device or mtd-id listed twice", e)
			}
		}
		out = append(out, m)
	}
	return out, nil
}
