package manifestgen

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestSplitTopLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a=1", []string{"a=1"}},
		{"a=1,b=2", []string{"a=1", "b=2"}},
		{`p={"a":1,"b":[1,2]},c=3`, []string{`p={"a":1,"b":[1,2]}`, "c=3"}},
		{`p={"s":"x,}]\"y"},c=3`, []string{`p={"s":"x,}]\"y"}`, "c=3"}},
		{`d="a, b",e=f`, []string{`d="a, b"`, "e=f"}},
		{`p=[{"a":"="},{}]`, []string{`p=[{"a":"="},{}]`}},
		{"", []string{""}},
		{",", []string{"", ""}},
		{`a=\,b`, []string{`a=\`, "b"}}, // backslash escapes only inside quotes
	} {
		got, err := SplitTopLevel(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitTopLevel(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{`p={"a":1`, `p={"a":1]`, `p="abc`, `p=}`, `p=[}`, `p={"a":"\"}`} {
		if got, err := SplitTopLevel(bad); err == nil {
			t.Errorf("SplitTopLevel(%q) = %q, want an error", bad, got)
		}
	}
}

func TestSplitKV(t *testing.T) {
	got, err := SplitKV(` a = 1 , b=x=y,c="q, \"r\"",d={"k":"v, w"}`)
	want := []KV{{"a", "1"}, {"b", "x=y"}, {"c", `q, "r"`}, {"d", `{"k":"v, w"}`}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("SplitKV = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []string{"", "a", "a=1,,b=2", "a=1,", "=1", "a=", `a=""`, `a="\q"`, "a=1,b"} {
		if got, err := SplitKV(bad); err == nil {
			t.Errorf("SplitKV(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseCompat(t *testing.T) {
	c, err := ParseCompat("manufacturer=Contoso,model=Toaster 2000,group=a=b")
	want := Compatibility{{"manufacturer", "Contoso"}, {"model", "Toaster 2000"}, {"group", "a=b"}}
	if err != nil || !reflect.DeepEqual(c, want) {
		t.Errorf("ParseCompat = %v, %v", c, err)
	}
	_, err = ParseCompat("model=a,model=b")
	if err == nil || !strings.Contains(err.Error(), "--compat") || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate key: %v", err)
	}
}

func TestParseStep(t *testing.T) {
	st, err := ParseStep(`handler=microsoft/script:1,files=a.sh; b.sh,properties={"arguments":"--x,--y","n":{"a":[1,2]}},description="pre, install"`)
	if err != nil {
		t.Fatal(err)
	}
	if st.Handler != "microsoft/script:1" || !reflect.DeepEqual(st.Files, []string{"a.sh", "b.sh"}) || st.Description != "pre, install" || st.UpdateID != nil {
		t.Errorf("inline step = %+v", st)
	}
	if len(st.Properties) != 2 || st.Properties[0].Name != "arguments" || string(st.Properties[1].Value) != `{"a":[1,2]}` {
		t.Errorf("properties = %v", st.Properties)
	}

	st, err = ParseStep("provider=Contoso,name=Toaster.Boot,version=1.0,desc=boot")
	if err != nil {
		t.Fatal(err)
	}
	if st.UpdateID == nil || *st.UpdateID != (UpdateID{"Contoso", "Toaster.Boot", "1.0"}) || st.Description != "boot" || st.Handler != "" {
		t.Errorf("reference step = %+v", st)
	}

	st, err = ParseStep("handler=microsoft/swupdate:1")
	if err != nil || st.Files != nil {
		t.Errorf("step without files: %+v, %v (Files must be nil so Build uses every --file)", st, err)
	}

	for in, wantErr := range map[string]string{
		"handler=a/b:1,foo=1":                      `unknown key "foo"`,
		"handler=a/b:1,handler=c/d:1":              "twice",
		"handler=a/b:1,provider=C":                 "cannot be combined",
		"provider=C,name=N":                        "missing version=",
		"provider=C,name=N,version=1.0,files=a":    "only apply to inline steps",
		"description=x":                            "needs handler=H",
		"handler=a/b:1,properties=[1]":             "must be a JSON object",
		"handler=a/b:1,properties={bad}":           "invalid JSON",
		`handler=a/b:1,properties={"a":1,"a":2}`:   "duplicate member",
		"handler=a/b:1,files=a;;b":                 "empty file name",
		"handler=a/b:1,description=x,desc=y":       "both",
		`handler=a/b:1,properties={"a":"unclosed}`: "unterminated",
	} {
		_, err := ParseStep(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.HasPrefix(err.Error(), "--step ") {
			t.Errorf("ParseStep(%q) error %v, want one naming --step and containing %q", in, err, wantErr)
		}
	}
}

func TestParseFile(t *testing.T) {
	f, err := ParseFile(`dir/fw.swu,properties={"a":"b,c"},downloadHandler=microsoft/delta:1`)
	if err != nil {
		t.Fatal(err)
	}
	if f.Path != "dir/fw.swu" || f.DownloadHandler != "microsoft/delta:1" || len(f.Properties) != 1 {
		t.Errorf("ParseFile = %+v", f)
	}
	for in, want := range map[string]string{
		"path=a.bin":        "a.bin",
		`"a,b.bin"`:         "a,b.bin",
		`path="a,b.bin"`:    "a,b.bin",
		"dir/x=y.bin":       "dir/x=y.bin",
		" spaced name.bin ": "spaced name.bin",
	} {
		f, err := ParseFile(in)
		if err != nil || f.Path != want {
			t.Errorf("ParseFile(%q) = %q, %v; want path %q", in, f.Path, err, want)
		}
	}
	for in, wantErr := range map[string]string{
		"a.bin,foo=1":            `unknown key "foo"`,
		",properties={}":         "empty path",
		"a.bin,properties=1":     "JSON object",
		"a.bin,downloadHandler=": "empty value",
	} {
		_, err := ParseFile(in)
		if err == nil || !strings.Contains(err.Error(), wantErr) || !strings.HasPrefix(err.Error(), "--file ") {
			t.Errorf("ParseFile(%q) error %v, want one naming --file and containing %q", in, err, wantErr)
		}
	}

	r, err := ParseRelatedFile(`d.bin,properties={"microsoft.sourceFileHash":"x=,y"}`)
	if err != nil || r.Path != "d.bin" || len(r.Properties) != 1 {
		t.Errorf("ParseRelatedFile = %+v, %v", r, err)
	}
	_, err = ParseRelatedFile("d.bin,downloadHandler=x/y:1")
	if err == nil || !strings.HasPrefix(err.Error(), "--related-file ") {
		t.Errorf("related file with downloadHandler: %v", err)
	}
}

func TestObjectOrderAndWith(t *testing.T) {
	o, err := ParseObject([]byte(` {"z": 1, "a": {"y": [1, 2]}, "m": "<&>"} `))
	if err != nil {
		t.Fatal(err)
	}
	o = o.With("installedCriteria", json.RawMessage(`"1.0"`)).With("a", json.RawMessage(`2`))
	b, err := json.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	// json.Marshal escapes HTML itself; Marshal (the manifest encoder) does not.
	if want := `{"z":1,"a":2,"m":"\u003c\u0026\u003e","installedCriteria":"1.0"}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
	for _, bad := range []string{`[]`, `1`, `{"a":1} {}`, `{"a":1,"a":2}`} {
		if _, err := ParseObject([]byte(bad)); err == nil {
			t.Errorf("ParseObject(%s): no error", bad)
		}
	}
}
