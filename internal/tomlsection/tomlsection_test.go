package tomlsection

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
)

type sec struct {
	A int `toml:"a"`
	B struct {
		C string `toml:"c"`
	} `toml:"b"`
}

func TestDecode(t *testing.T) {
	doc := "[other]\nzzz = 1\n[mine]\na = 3\n[mine.b]\nc = \"x\"\n"
	var s sec
	md, found, err := Decode([]byte(doc), "mine", &s)
	if err != nil || !found || s.A != 3 || s.B.C != "x" || !md.IsDefined("mine", "b", "c") {
		t.Fatalf("%+v %v %v", s, found, err)
	}
	if _, found, err := Decode([]byte(doc), "absent", &s); found || err != nil {
		t.Fatalf("absent: %v %v", found, err)
	}
	_, _, err = Decode([]byte(doc+"[mine.b.d]\ne = 1\n"), "mine", &sec{})
	if err == nil || !strings.Contains(err.Error(), "mine.b.d.e") || strings.Contains(err.Error(), "zzz") {
		t.Fatalf("unknown key: %v", err)
	}
	if _, _, err := Decode([]byte("mine = 5\n"), "mine", &sec{}); err == nil {
		t.Fatal("a section that is not a table was accepted")
	}
	if _, _, err := Decode([]byte("[mine\n"), "mine", &sec{}); err == nil {
		t.Fatal("invalid TOML accepted")
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.toml"
	parse := func(b []byte) (int, error) {
		if string(b) != "ok" {
			return 0, errors.New("bad")
		}
		return 7, nil
	}
	if _, err := LoadFile(path, parse); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	os.WriteFile(path, []byte("nope"), 0o644)
	if _, err := LoadFile(path, parse); err == nil || !strings.HasPrefix(err.Error(), path+": ") {
		t.Fatalf("parse error: %v", err)
	}
	os.WriteFile(path, []byte("ok"), 0o644)
	if v, err := LoadFile(path, parse); v != 7 || err != nil {
		t.Fatalf("%v %v", v, err)
	}
}
