package adaptive

import (
	"errors"
	"fmt"
	"io"
)

// Source is a range of something the device holds, as Extend reads it: bytes [From, End) of R.
type Source struct {
	R         io.ReaderAt
	From, End int64
}

// Extend finds chunks a Scan missed beside chunks it found: where entry i-1 lies on a source,
// entry i is looked for right after it, and where entry i+1 lies, right before it, until no
// more are found. A change in place (a file rewritten in a block image) moves the content-
// defined cuts of what the device holds for a chunk or two after it, so a scan misses
// unchanged chunks there; their neighbours lead to them. Only chunks not found beside found
// ones are read and hashed, each place once. found's Source numbers index sources; Extend
// records what it finds in found and returns how many chunks that is.
func (x *Index) Extend(sources []Source, found map[Sum]Location) (int, error) {
	type place struct {
		sum Sum
		loc Location
	}
	tried := map[place]bool{}
	buf := make([]byte, x.Params.Max)
	n := 0
	// probe looks for entry e at offset at of source src.
	probe := func(e Entry, src int, at int64) error {
		if _, ok := found[e.Sum]; ok || src < 0 || src >= len(sources) {
			return nil
		}
		s, loc := sources[src], Location{Source: src, Offset: at}
		if at < s.From || at+int64(e.Size) > s.End || tried[place{e.Sum, loc}] {
			return nil
		}
		tried[place{e.Sum, loc}] = true
		b := buf[:e.Size]
		if k, err := s.R.ReadAt(b, at); k < len(b) || (err != nil && !errors.Is(err, io.EOF)) {
			return fmt.Errorf("adaptive: reading %d bytes at %d of source %d: %w", len(b), at, src, shortRead(err))
		}
		if SumOf(b) == e.Sum {
			found[e.Sum] = loc
			n++
		}
		return nil
	}
	for before := -1; before != n; {
		before = n
		for i := 1; i < len(x.Entries); i++ {
			if l, ok := found[x.Entries[i-1].Sum]; ok {
				if err := probe(x.Entries[i], l.Source, l.Offset+int64(x.Entries[i-1].Size)); err != nil {
					return n, err
				}
			}
		}
		for i := len(x.Entries) - 2; i >= 0; i-- {
			if l, ok := found[x.Entries[i+1].Sum]; ok {
				if err := probe(x.Entries[i], l.Source, l.Offset-int64(x.Entries[i].Size)); err != nil {
					return n, err
				}
			}
		}
	}
	return n, nil
}

// shortRead is err, or io.ErrUnexpectedEOF for a short read without one.
func shortRead(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
