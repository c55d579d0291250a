package ubootenv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
)

func TestEncodeLayout(t *testing.T) {
	vars := []Var{{"b", "2"}, {"a", "1"}}
	for _, tc := range []struct {
		name string
		f    Format
	}{
		{"single", Format{Size: 64}},
		{"redundant", Format{Size: 64, Redundant: true}},
		{"padff", Format{Size: 64, PadFF: true}},
		{"bigendian", Format{Size: 64, BigEndian: true, Redundant: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob, err := Encode(vars, tc.f, 7)
			if err != nil {
				t.Fatal(err)
			}
			if len(blob) != 64 {
				t.Fatalf("len %d", len(blob))
			}
			h := tc.f.HeaderSize()
			data := blob[h:]
			want := "a=1\x00b=2\x00\x00"
			if string(data[:len(want)]) != want {
				t.Fatalf("data %q", data[:len(want)])
			}
			pad := byte(0)
			if tc.f.PadFF {
				pad = 0xFF
			}
			for i := len(want); i < len(data); i++ {
				if data[i] != pad {
					t.Fatalf("pad byte %d = %#x", i, data[i])
				}
			}
			var order binary.ByteOrder = binary.LittleEndian
			if tc.f.BigEndian {
				order = binary.BigEndian
			}
			if got, want := order.Uint32(blob), crc32.ChecksumIEEE(data); got != want {
				t.Fatalf("crc %#x want %#x", got, want)
			}
			if tc.f.Redundant && blob[4] != 7 {
				t.Fatalf("flags %#x", blob[4])
			}
			b, err := Decode(blob, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.Vars, []Var{{"a", "1"}, {"b", "2"}}) {
				t.Fatalf("vars %v", b.Vars)
			}
			// the other endianness must fail the CRC
			other := tc.f
			other.BigEndian = !other.BigEndian
			if _, err := Decode(blob, other); !errors.Is(err, ErrBadCRC) {
				t.Fatalf("other endianness: %v", err)
			}
		})
	}
}

func TestEncodeTooLarge(t *testing.T) {
	f := Format{Size: 16} // data area 12
	// "abc=defgh\0" = 10 + final NUL = 11 fits; one more byte does not
	if _, err := Encode([]Var{{"abc", "defgh"}}, f, 0); err != nil {
		t.Fatal(err)
	}
	_, err := Encode([]Var{{"abc", "defghij"}}, f, 0)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "env size 16") {
		t.Fatalf("got %v", err)
	}
	if _, err := Encode(nil, Format{Size: 4}, 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("tiny: %v", err)
	}
}

func TestEncodeInvalid(t *testing.T) {
	for _, v := range []Var{{"", "x"}, {"a=b", "x"}, {"a\x00", "x"}, {"a", "x\x00y"}} {
		if _, err := Encode([]Var{v}, Format{Size: 64}, 0); !errors.Is(err, ErrInvalidVar) {
			t.Errorf("%q: %v", v, err)
		}
	}
	if _, err := Encode([]Var{{"a", "1"}, {"a", "2"}}, Format{Size: 64}, 0); !errors.Is(err, ErrInvalidVar) {
		t.Errorf("duplicate: %v", err)
	}
}

func rawBlob(f Format, data string, fill byte) []byte {
	blob := bytes.Repeat([]byte{fill}, f.Size)
	copy(blob[f.HeaderSize():], data)
	binary.LittleEndian.PutUint32(blob, crc32.ChecksumIEEE(blob[f.HeaderSize():]))
	return blob
}

func TestDecodeEdgeCases(t *testing.T) {
	f := Format{Size: 32}
	for _, tc := range []struct {
		name, data string
		fill       byte
		want       []Var
		err        error
	}{
		{"empty", "\x00", 0, nil, nil},
		{"stop at double nul", "a=1\x00\x00b=2\x00", 0, []Var{{"a", "1"}}, nil},
		{"ff padding", "a=1\x00\x00", 0xFF, []Var{{"a", "1"}}, nil},
		{"no equals skipped", "junk\x00a=1\x00\x00", 0, []Var{{"a", "1"}}, nil},
		{"empty name skipped", "=x\x00a=\x00\x00", 0, []Var{{"a", ""}}, nil},
		{"value with equals", "a=b=c\x00\x00", 0, []Var{{"a", "b=c"}}, nil},
		{"duplicate last wins", "a=1\x00b=2\x00a=3\x00\x00", 0, []Var{{"a", "3"}, {"b", "2"}}, nil},
		{"unterminated", strings.Repeat("x", 28), 0, nil, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode(rawBlob(f, tc.data, tc.fill), f)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.Vars, tc.want) {
				t.Fatalf("got %v want %v", b.Vars, tc.want)
			}
		})
	}
	blob := rawBlob(f, "a=1\x00\x00", 0)
	blob[10] ^= 1 // padding is covered by the CRC
	if _, err := Decode(blob, f); !errors.Is(err, ErrBadCRC) {
		t.Fatalf("flipped padding: %v", err)
	}
	if _, err := Decode(blob[:20], f); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short: %v", err)
	}
	// the flags byte is not covered by the CRC
	rf := Format{Size: 32, Redundant: true}
	rb := rawBlob(rf, "a=1\x00\x00", 0)
	rb[4] = 0x42
	if b, err := Decode(rb, rf); err != nil || b.Flags != 0x42 {
		t.Fatalf("flags: %v %v", b, err)
	}
}
