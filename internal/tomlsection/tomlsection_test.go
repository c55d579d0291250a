package tomlsection

import (
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
