package tomlsection

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
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

type timed struct {
	embedded
	Wait time.Duration `toml:"wait"`
	N    int           `toml:"n"`
}

type embedded struct {
	Grace time.Duration `toml:"grace"`
}

// TestDecodeDurations: durations are strings with a unit; an integer (nanoseconds to the
// decoder) is refused naming the key, in embedded structs too; a key left out keeps dst's
// default.
func TestDecodeDurations(t *testing.T) {
	s := timed{Wait: time.Minute}
	if _, _, err := Decode([]byte("[mine]\ngrace = \"90s\"\nn = 5\n"), "mine", &s); err != nil || s.Grace != 90*time.Second || s.Wait != time.Minute || s.N != 5 {
		t.Fatalf("%+v %v", s, err)
	}
	for _, doc := range []string{"[mine]\nwait = 300\n", "[mine]\ngrace = 300\n"} {
		_, _, err := Decode([]byte(doc), "mine", &timed{})
		key := "mine." + strings.Fields(doc)[1]
		if err == nil || !strings.Contains(err.Error(), key+": an integer is not a duration") {
			t.Errorf("%q: %v", doc, err)
		}
	}
	_, _, err := Decode([]byte("[mine]\n\nwait = \"soon\"\n"), "mine", &timed{})
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "mine.wait") {
		t.Errorf("bad duration: %v", err)
	}
}

func TestSubkeys(t *testing.T) {
	md, _, err := Decode([]byte("[mine.m]\nz = 1\na = 2\n\"q r\" = 3\n[mine.n]\nx = 1\n"), "mine", &struct {
		M map[string]int `toml:"m"`
		N map[string]int `toml:"n"`
	}{})
	if err != nil {
		t.Fatal(err)
	}
	if got := Subkeys(md, "mine", "m"); !slices.Equal(got, []string{"z", "a", "q r"}) {
		t.Errorf("%q", got)
	}
}

// TestDecodeArrayOfTablesError: the decoder would give the line of the last entry's key,
// whichever entry is wrong; the error names the key and no line.
func TestDecodeArrayOfTablesError(t *testing.T) {
	var s struct {
		T []timed `toml:"t"`
	}
	_, _, err := Decode([]byte("[mine]\n[[mine.t]]\nwait = \"soon\"\n[[mine.t]]\nwait = \"1s\"\n"), "mine", &s)
	if err == nil || strings.Contains(err.Error(), "line") || !strings.Contains(err.Error(), `mine.t.wait: invalid duration: "soon"`) {
		t.Errorf("%v", err)
	}
}
